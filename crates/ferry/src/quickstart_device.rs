//! The device part of `ferry quickstart`: a sample device tree (homes of three Contoso users and
//! a shared folder, with owners, access and default ACLs, a symlink and a hard link), a runbook
//! and a batch of this computer enforced before the quickstart's `ferry.toml` was written (both
//! in that file: runbooks and batches as code), and a local agent that enrolls over TLS, takes
//! the migration and re-permissions the tree to the users' Fabrikam accounts.
//!
//! The tree stands for a device: its users are in `device/passwd` (not the machine's), the agent's
//! "prevent sign-in" file is `device/nologin` (not `/etc/nologin`), and nobody counts as signed in.

use anyhow::{Context, Result, bail};
use ferry_agent::acl;
use ferry_agent::daemon::{self, Config};
use ferry_agent::harvest::Sources;
use ferry_agent::run::RunState;
use ferry_client::Client;
use ferry_client::wire::NewPsk;
use ferry_core::ObjectKind;
use ferry_core::agent::Credential;
use std::os::unix::fs::{MetadataExt, chown, symlink};
use std::path::{Path, PathBuf};

pub struct Outcome {
    pub run: RunState,
    pub tree: PathBuf,
    pub state_dir: PathBuf,
}

struct User {
    login: String,
    uid: u32,
    gid: u32,
    target_login: String,
    target_uid: u32,
    target_gid: u32,
}

pub async fn demo(dir: &Path, admin: &Client, endpoint: &(String, String)) -> Result<Outcome> {
    if std::fs::metadata("/proc/self")?.uid() != 0 {
        bail!(
            "the local agent changes files' owners, which needs root: run the quickstart as root (sudo) to see it"
        );
    }
    let entries = admin
        .translation_entries(Some("users"), Some(ObjectKind::User))
        .await?;
    let users: Vec<User> = entries
        .iter()
        .filter_map(|e| {
            let login = |upn: &Option<String>| {
                upn.as_deref()
                    .and_then(|u| u.split('@').next())
                    .map(|s| s.to_lowercase())
            };
            Some(User {
                login: login(&e.source_upn)?,
                uid: e.source_uid?,
                gid: e.source_gid?,
                target_login: login(&e.target_upn)?,
                target_uid: e.target_uid?,
                target_gid: e.target_gid?,
            })
        })
        .take(3)
        .collect();
    if users.len() < 2 {
        bail!("the translation table has fewer than two users with uids to migrate");
    }
    let device = dir.join("device");
    let tree = device.join("home");
    if !tree.exists() {
        build_tree(&device, &users).context("cannot build the sample device tree")?;
    }
    let mut passwd = String::new();
    for u in &users {
        passwd.push_str(&format!(
            "{}:x:{}:{}:{}:{}:/bin/bash\n",
            u.login,
            u.uid,
            u.gid,
            u.login,
            tree.join(&u.login).display()
        ));
        passwd.push_str(&format!(
            "{}:x:{}:{}:{}:{}:/bin/bash\n",
            u.target_login,
            u.target_uid,
            u.target_gid,
            u.target_login,
            device.join("home-target").join(&u.target_login).display()
        ));
    }
    std::fs::write(device.join("passwd"), passwd)?;

    // The runbook and batch are ferry.toml's (`config` below), put into the store at start.
    let configured = admin
        .batches()
        .await?
        .into_iter()
        .any(|b| b.batch.name == "Quickstart" && b.origin == "file");
    if !configured {
        bail!(
            "{} has no [[batch]] `Quickstart` (an older quickstart wrote it): delete that file to have it written again",
            dir.join("ferry.toml").display()
        );
    }

    let state_dir = dir.join("agent");
    let psk = if state_dir.join("agent.json").exists() {
        None
    } else {
        let created = admin
            .create_psk(&NewPsk {
                name: format!("quickstart-{}", jiff::Timestamp::now().as_second()),
                uses: None,
                device: None,
            })
            .await?;
        Some(Credential::new(&created.key))
    };
    let cfg = Config {
        server: Some(endpoint.0.clone()),
        psk,
        fingerprint: Some(endpoint.1.clone()),
        state_dir: state_dir.clone(),
        once: true,
        sources: Sources {
            passwd: device.join("passwd"),
            nss: false,
            home_roots: Vec::new(),
            ..Sources::default()
        },
        sessions_command: Some("true".into()),
        nologin_file: device.join("nologin"),
        legal_notice_file: device.join("issue"),
        threads: 2,
        min_id: ferry_core::privileged::DEFAULT_MIN_ID,
        poll_seconds: Some(1),
        reboot_required_file: device.join("reboot-required"),
        min_free_mb: 16,
    };
    // Enroll (this computer is in the batch already), then take the migration.
    daemon::run(cfg.clone()).await.map_err(anyhow::Error::msg)?;
    let cfg = Config { psk: None, ..cfg };
    daemon::run(cfg).await.map_err(anyhow::Error::msg)?;
    let run: RunState = ferry_agent::state::read_json(&state_dir.join("run.json"))
        .map_err(anyhow::Error::msg)?
        .context("the agent did not start the migration")?;
    Ok(Outcome {
        run,
        tree: device,
        state_dir,
    })
}

/// The quickstart's `[[runbook]]` and `[[batch]]`: the sample device tree re-permissioned, on
/// this computer, enforced 20 minutes before the file was written (past the 15-minute window
/// over which a batch's devices are spread, so the agent starts at its first check-in).
pub fn config(dir: &Path) -> String {
    // TOML basic strings: JSON's escapes are TOML's.
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let device = dir.join("device");
    let enforced = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(20);
    format!(
        r#"
# The sample device's migration (runbooks and batches as code: read-only in the console).
[[runbook]]
name = "Quickstart"
source_directories = ["contoso"]
target_directories = ["fabrikam"]
[runbook.startup]
prevent_login = true
[[runbook.startup.pre_migration_scripts]]
name = "check"
interpreter = "sh"
body = """
echo "pre-migration check of run $FERRY_RUN on $(hostname)"
test -r "$FERRY_TRANSLATION"
"""
[runbook.user_experience]
message = "Your device is moving to Fabrikam."
[runbook.permission_updates]
mode = "add-and-remove"
paths = [{home}, {shared}]
ignore = ["**/.cache"]
[[runbook.completion.post_migration_scripts]]
name = "report"
interpreter = "sh"
body = 'echo "migrated; translation in $FERRY_TRANSLATION"'

[[batch]]
name = "Quickstart"
source_directory = "contoso"
target_directory = "fabrikam"
runbooks = ["Quickstart"]
enforced_after = "{enforced}"
time_zone = "UTC"
computers = [{computer}]
"#,
        home = quote(&device.join("home").to_string_lossy()),
        shared = quote(&device.join("shared").to_string_lossy()),
        enforced = enforced.strftime("%Y-%m-%dT%H:%M"),
        computer = quote(&daemon::device_facts().hostname),
    )
}

fn build_tree(device: &Path, users: &[User]) -> std::io::Result<()> {
    let home = device.join("home");
    for (i, u) in users.iter().enumerate() {
        let next = &users[(i + 1) % users.len()];
        let h = home.join(&u.login);
        for d in ["Documents", "Projects", ".cache"] {
            std::fs::create_dir_all(h.join(d))?;
        }
        std::fs::write(
            h.join("Documents/report.txt"),
            format!("{}'s report\n", u.login),
        )?;
        std::fs::write(h.join("Documents/Meeting notes.txt"), "notes\n")?;
        std::fs::write(h.join("Projects/plan.md"), "# plan\n")?;
        std::fs::write(h.join(".cache/thumbs.db"), "cache\n")?;
        std::fs::write(h.join(".profile"), "umask 022\n")?;
        std::fs::hard_link(
            h.join("Documents/report.txt"),
            h.join("Projects/report (hard link).txt"),
        )?;
        symlink("Documents/report.txt", h.join("latest-report"))?;
        for p in walk(&h)? {
            std::os::unix::fs::lchown(&p, Some(u.uid), Some(u.gid))?;
        }
        // The next user may read the report; the project folder gives them rwx, also by default.
        acl::grant(
            &h.join("Documents/report.txt"),
            acl::USER,
            next.uid,
            4,
            false,
        )?;
        acl::grant(&h.join("Projects"), acl::USER, next.uid, 7, false)?;
        acl::grant(&h.join("Projects"), acl::USER, next.uid, 7, true)?;
    }
    let shared = device.join("shared");
    std::fs::create_dir_all(shared.join("Team"))?;
    std::fs::write(shared.join("Team/handbook.txt"), "handbook\n")?;
    chown(&shared, Some(0), Some(users[0].gid))?;
    for u in users {
        acl::grant(&shared, acl::USER, u.uid, 7, false)?;
        acl::grant(&shared, acl::USER, u.uid, 7, true)?;
        acl::grant(
            &shared.join("Team/handbook.txt"),
            acl::USER,
            u.uid,
            6,
            false,
        )?;
    }
    acl::grant(&shared, acl::GROUP, users[0].gid, 5, false)?;
    Ok(())
}

fn walk(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if std::fs::symlink_metadata(&p)?.is_dir() {
            for e in std::fs::read_dir(&p)? {
                out.push(e?.path());
            }
        }
        i += 1;
    }
    Ok(out)
}
