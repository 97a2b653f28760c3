//! `ferry repermission` as a user runs it, killed with SIGKILL mid-run and started again with the
//! same journal: the work finishes, and undo brings back every file's owner, group, mode and ACL.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn killed_runs_resume_and_undo_restores_everything() {
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        assert_ne!(
            std::env::var("FERRY_REQUIRE_SERVERS").as_deref(),
            Ok("1"),
            "scripts/test must run this as root"
        );
        eprintln!("skipping: needs root");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("tree");
    for i in 0..40 {
        let dir = t.join(format!("d{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        for j in 0..500 {
            let f = dir.join(format!("f {j}"));
            std::fs::write(&f, "x").unwrap();
            std::os::unix::fs::chown(
                &f,
                Some(1000 + (j % 50) as u32),
                Some(1500 + (j % 5) as u32),
            )
            .unwrap();
        }
        let o = Command::new("setfacl")
            .args(["-R", "-m", "u:1001:rw,g:1501:r"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(o.status.success());
    }
    let before = dump(&t);
    let mut map = String::from("source,target\n");
    for u in 0..50 {
        map.push_str(&format!("uid:{},uid:{}\n", 1000 + u, 5000 + u));
    }
    for g in 0..5 {
        map.push_str(&format!("gid:{},gid:{}\n", 1500 + g, 1600 + g));
    }
    std::fs::write(d.path().join("map.csv"), map).unwrap();
    let journal = d.path().join("journal");
    let args = |j: &Path| {
        vec![
            "repermission".to_string(),
            "--map".into(),
            d.path().join("map.csv").display().to_string(),
            "--journal".into(),
            j.display().to_string(),
            t.display().to_string(),
        ]
    };
    // Kill it at random points (the seed is printed to replay a failure), then let it finish.
    for ms in kill_points(12, 120) {
        let ms = ms + 1;
        let mut c = Command::new(FERRY).args(args(&journal)).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let _ = Command::new("kill")
            .args(["-KILL", &c.id().to_string()])
            .status();
        let _ = c.wait();
    }
    let o = ferry(
        &args(&journal)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let after = dump(&t);
    assert!(
        !after.contains(" 1001 ") && !after.contains("user:1001:"),
        "not everything was translated"
    );
    // Finished: a run over the result changes nothing.
    let o = ferry(
        &args(&journal)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &[],
    );
    assert!(text(&o).contains(" 0 changed"), "{}", text(&o));
    // A different map is refused on this journal.
    std::fs::write(
        d.path().join("other.csv"),
        "source,target\nuid:1000,uid:9000\n",
    )
    .unwrap();
    let o = ferry(
        &[
            "repermission",
            "--map",
            d.path().join("other.csv").to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
            t.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        !o.status.success() && text(&o).contains("another map"),
        "{}",
        text(&o)
    );
    // Undo: exactly as before the first (killed) run.
    let o = ferry(
        &[
            "repermission",
            "undo",
            "--journal",
            journal.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(dump(&t), before);
}
