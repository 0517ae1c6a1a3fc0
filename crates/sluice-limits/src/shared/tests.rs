use super::*;

#[test]
fn slots_follow_the_hash_tag() {
    // Redis Cluster's documented examples.
    assert_eq!(slot("123456789"), 12739);
    assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
    assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
    assert_eq!(escape("a{b}%"), "a%7Bb%7D%25");
}
