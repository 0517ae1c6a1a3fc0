// The benchmarks' prompt, shared by `benches/guard.rs` and `examples/instructions.rs`.

/// About 4 KiB of ordinary prose with a number, an address and a key in it.
fn prompt() -> String {
    let para = "The river carries water from the hills to the sea, and along the way it shapes valleys, \
                feeds farms and gives cities their water. In 2023 the basin held about 7411 farms. \
                Write to ann.lee@example.com with questions, or call +44 20 7946 0958 on weekdays. ";
    let mut text = String::new();
    while text.len() < 4096 - para.len() {
        text.push_str(para);
    }
    text.push_str("deploy with key ghp_Zk3q9XvR2mT8wPbL7nYc4HdJ1aB2cD3eF4gH today.");
    text
}
