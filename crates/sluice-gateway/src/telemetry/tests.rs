//! The access log's queue and the metrics' rendering, under load and when the writer stalls.
use super::*;
use crate::finish::Finish;
use std::sync::atomic::Ordering;

/// A writer that blocks until the test lets it go, like a disk that stopped keeping up.
struct Stuck {
    entered: std::sync::mpsc::Sender<()>,
    release: std::sync::mpsc::Receiver<()>,
}

impl Write for Stuck {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.entered.send(());
        let _ = self.release.recv();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn finish_one(t: &Arc<Telemetry>, i: usize) {
    let mut f = Finish::new(t.clone(), format!("r{i}"), "chat_completions", Arc::from("v"));
    f.respond(200, None);
    f.complete();
}

/// A `Write` the test can read back.
#[derive(Clone, Default)]
struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_half_full_queue_wakes_the_writer_before_its_tick() {
    let out = Shared::default();
    // A tick of an hour: only the early wake can get these lines written.
    let t = Arc::new(
        Telemetry::with_writer_tick(Some(Box::new(out.clone())), 16, std::time::Duration::from_secs(3600)).unwrap(),
    );
    std::thread::sleep(std::time::Duration::from_millis(50)); // let the writer park
    for i in 0..8 {
        finish_one(&t, i);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while t.log_written.load(Ordering::Acquire) < 8 {
        assert!(std::time::Instant::now() < deadline, "the writer was never woken");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), 8);
    assert!(text.contains("\"request_id\":\"r7\""), "{text}");
}

#[test]
fn a_full_log_queue_counts_every_dropped_line() {
    let (release_tx, release) = std::sync::mpsc::channel();
    let (entered, stuck) = std::sync::mpsc::channel();
    let t = Arc::new(Telemetry::with_writer(Some(Box::new(Stuck { entered, release })), 16).unwrap());
    finish_one(&t, 0);
    stuck.recv().unwrap(); // the writer holds line 0 and is stuck writing it
    for i in 1..=100 {
        finish_one(&t, i);
    }
    // 16 lines fit in the queue; the other 84 are counted, none vanish silently.
    assert_eq!(t.metrics.log_dropped.get(), 84);
    assert!(t.render().contains("sluice_access_log_dropped_total 84"));
    drop(release_tx);
}

/// Records every `write` call separately.
#[derive(Clone, Default)]
struct Calls(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl Write for Calls {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().push(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn only_whole_lines_reach_the_file() {
    // Another process appending to the same file (a hand-over) must never land inside a
    // line: every write the writer makes ends at a line's end.
    let out = Calls::default();
    let t = Arc::new(Telemetry::with_writer(Some(Box::new(out.clone())), 4096).unwrap());
    for i in 0..2000 {
        finish_one(&t, i);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while t.log_written.load(Ordering::Acquire) < 2000 {
        assert!(std::time::Instant::now() < deadline, "the writer fell behind");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let calls = out.0.lock().unwrap().clone();
    assert!(calls.len() > 1, "the lines took several writes");
    assert!(calls.iter().all(|c| c.ends_with(b"\n")), "a write ended inside a line");
    let lines: usize = calls.iter().map(|c| c.iter().filter(|b| **b == b'\n').count()).sum();
    assert_eq!(lines, 2000);
}
