//! `sluice audit verify` against a real audit log: admin writes made through a gateway's API,
//! then the SQLite file tampered with in each way — an entry edited, one deleted, the tail cut
//! off, the tail cut off with the head rewritten to match — and each is found.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use http::Method;
use serde_json::json;
use sluice_testkit::*;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn verify(config: &Path, head: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["audit", "verify", "--config", config.to_str().unwrap()]);
    if let Some(h) = head {
        cmd.args(["--head", h]);
    }
    cmd.output().expect("sluice runs")
}

/// A copy of the gateway's directory (its config names the store inside it), tampered with by
/// `sql`, and the copy's config.
fn tampered(from: &Path, to: &Path, sql: &str) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for f in ["keys.db", "keys.db-wal", "keys.db-shm"] {
        if from.join(f).exists() {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
    }
    let text = std::fs::read_to_string(from.join("sluice.yaml")).unwrap();
    let config = to.join("sluice.yaml");
    std::fs::write(&config, text.replace(from.to_str().unwrap(), to.to_str().unwrap())).unwrap();
    let db = rusqlite::Connection::open(to.join("keys.db")).unwrap();
    db.execute_batch(sql).unwrap();
    config
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn verify_finds_an_edited_a_deleted_and_a_cut_off_entry() {
    let mock = mock().await;
    let gw = TestGateway::start(&config_with(&mock)).await;
    let mut secrets = Vec::new();
    for id in ["k1", "k2", "k3"] {
        let r = gw
            .admin(Method::POST, "/admin/keys", Some(json!({"id": id, "tenant": "acme"})))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        secrets.push(r.json()["key"].as_str().unwrap().to_owned());
    }
    assert_eq!(gw.admin(Method::DELETE, "/admin/keys/k2", None).await.status, 200);
    let page = gw.admin(Method::GET, "/admin/audit", None).await.json();
    let entries = page["data"].as_array().unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["key.create", "key.create", "key.create", "key.revoke"]);
    assert_eq!(entries[0]["actor"], "local");
    let all = serde_json::to_string(&page).unwrap();
    assert!(
        secrets.iter().all(|k| !all.contains(k.as_str())),
        "no secret in the audit log"
    );
    let last_hash = page["head"]["hash"].as_str().unwrap().to_owned();
    assert_eq!(entries[3]["hash"].as_str().unwrap(), last_hash);
    let dir = gw.shutdown().await;
    let src = dir.path();

    let out = verify(&src.join("sluice.yaml"), Some(&last_hash));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ok (4 entries"), "{}", text(&out));

    let work = tempfile::tempdir().unwrap();
    let cases = [
        (
            "edited",
            "UPDATE admin_audit SET after_json = '{\"id\":\"someone-else\"}' WHERE seq = 2;",
            "entry 2 was edited",
        ),
        (
            "deleted",
            "DELETE FROM admin_audit WHERE seq = 2;",
            "missing before entry 3",
        ),
        ("truncated", "DELETE FROM admin_audit WHERE seq = 4;", "cut off the end"),
    ];
    for (name, sql, expect) in cases {
        let config = tampered(src, &work.path().join(name), sql);
        let out = verify(&config, None);
        assert!(!out.status.success(), "{name} passed: {}", text(&out));
        assert!(text(&out).contains(expect), "{name}: {}", text(&out));
    }
    // Cut off and the head rewritten to the new end: the chain alone looks whole, but the head
    // hash a log line reported is gone from it.
    let config = tampered(
        src,
        &work.path().join("rewritten"),
        "DELETE FROM admin_audit WHERE seq = 4;
         UPDATE admin_audit_head SET seq = 3, hash = (SELECT hash FROM admin_audit WHERE seq = 3);",
    );
    assert!(verify(&config, None).status.success());
    let out = verify(&config, Some(&last_hash));
    assert!(!out.status.success());
    assert!(text(&out).contains("no entry has the hash"), "{}", text(&out));
}
