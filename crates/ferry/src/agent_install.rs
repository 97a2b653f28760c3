//! `ferry agent install` and `ferry agent uninstall`: the agent as a systemd service on a Linux
//! device, configured from the same three values the Windows MSI takes as properties (server,
//! pre-shared key, fingerprint).
//!
//! Install writes `/etc/ferry-agent/psk` (0600: the key, and the only file that holds it),
//! `/etc/ferry-agent/agent.env` (0644: server URL, fingerprint, state directory; read by the unit
//! as its `EnvironmentFile`), and the unit itself unless the `ferry-agent` package installed it
//! (the same text, `packaging/ferry-agent.service`, with this binary's path and a mark saying who
//! wrote it). Where systemd runs (`/run/systemd/system`) it then enables and (re)starts the unit.
//! Uninstall undoes exactly that: the unit only when it carries the mark, and the state directory
//! only with `--purge`, since the journal in it is what `ferry agent rollback` undoes a run with.

use anyhow::{Context, Result, bail};
use ferry_agent::client::{check_server, parse_fingerprint};
use ferry_agent::state::atomic_write;
use ferry_core::agent::Credential;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The unit the package ships; also what install writes when the package is absent.
const UNIT: &str = include_str!("../../../packaging/ferry-agent.service");
const UNIT_NAME: &str = "ferry-agent.service";
/// Where the `ferry-agent` package puts the unit (either, with or without merged /usr).
const PACKAGED_UNITS: [&str; 2] = [
    "lib/systemd/system/ferry-agent.service",
    "usr/lib/systemd/system/ferry-agent.service",
];
const LOCAL_UNIT: &str = "etc/systemd/system/ferry-agent.service";
/// The first line of a unit install wrote: uninstall removes a unit only when it starts so.
const MARK: &str = "# Written by `ferry agent install`; `ferry agent uninstall` removes it.\n";
const CONFIG_DIR: &str = "etc/ferry-agent";
const DEFAULT_STATE_DIR: &str = "/var/lib/ferry-agent";

#[derive(clap::Args)]
pub struct InstallArgs {
    /// The pre-shared key (`ferry psk create`). A key given here shows in `ps` to every local
    /// user while install runs: prefer --psk-file or FERRY_AGENT_PSK.
    #[arg(long, env = "FERRY_AGENT_PSK", hide_env_values = true)]
    pub psk: Option<String>,
    /// A file holding the pre-shared key (trailing newline ignored).
    #[arg(long, conflicts_with = "psk")]
    pub psk_file: Option<PathBuf>,
    /// SHA-256 of the server's agent certificate, as `ferry agents endpoint` shows it.
    #[arg(long)]
    pub fingerprint: String,
    #[command(flatten)]
    pub state: crate::agent::StateArgs,
    /// Enable the unit but do not start it now.
    #[arg(long)]
    pub no_start: bool,
    /// Write into this directory as if it were `/` (an image being built; tests). Never runs
    /// systemctl.
    #[arg(long, hide = true, default_value = "/")]
    pub root: PathBuf,
}

#[derive(clap::Args)]
pub struct UninstallArgs {
    /// Also delete the agent's state directory. Without it the directory stays: its journal is
    /// what `ferry agent rollback` undoes the last migration with.
    #[arg(long)]
    pub purge: bool,
    /// See `ferry agent install --root`.
    #[arg(long, hide = true, default_value = "/")]
    pub root: PathBuf,
}

/// `ROOT/rel`.
fn under(root: &Path, rel: &str) -> PathBuf {
    root.join(rel)
}

/// The path as the installed system sees it (`/etc/…`), for messages.
fn shown(rel: &str) -> String {
    format!("/{rel}")
}

/// Whether systemd manages this machine, and install writes into it (not into an image).
fn systemd_running(root: &Path) -> bool {
    root == Path::new("/") && Path::new("/run/systemd/system").is_dir()
}

/// A value written into agent.env and expanded on the unit's command line: nothing that the
/// file's or the command line's quoting would change.
fn plain(what: &str, v: &str) -> Result<()> {
    if let Some(c) = v
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "\"'\\$`;".contains(*c))
    {
        bail!("{what} `{v}` holds {c:?}, which the unit's environment file cannot carry as is");
    }
    Ok(())
}

pub fn install(a: InstallArgs, server: Option<String>) -> Result<ExitCode> {
    let Some(server) = server else {
        bail!(
            "give --server URL: the agent endpoint, as `ferry agents endpoint` shows it (https://HOST:5443/agent)"
        );
    };
    check_server(&server).map_err(anyhow::Error::msg)?;
    plain("--server", &server)?;
    parse_fingerprint(&a.fingerprint).map_err(|e| anyhow::anyhow!("--fingerprint {e}"))?;
    plain("--fingerprint", &a.fingerprint)?;
    let state_dir = &a.state.state_dir;
    let state_text = state_dir.to_str().unwrap_or_default();
    if !state_dir.is_absolute() || state_text.is_empty() {
        bail!("--state-dir {}: give an absolute path", state_dir.display());
    }
    plain("--state-dir", state_text)?;
    let psk = match (a.psk, &a.psk_file) {
        (_, Some(f)) => crate::agent::read_psk_file(f)?,
        (Some(k), None) => k,
        (None, None) => bail!(
            "give the pre-shared key (`ferry psk create`): --psk-file FILE, or FERRY_AGENT_PSK"
        ),
    };
    let psk = Credential::new(psk);
    if psk.is_empty() || psk.expose().chars().any(char::is_control) {
        bail!("the pre-shared key is empty or holds a line break or control character");
    }

    let root = &a.root;
    // Which unit runs the agent, decided before anything is written.
    let unit = match PACKAGED_UNITS.iter().find(|p| under(root, p).is_file()) {
        Some(p) => Unit::Packaged(p),
        None => {
            let exe = std::env::current_exe().context("cannot tell where this ferry binary is")?;
            let exe_text = exe.to_str().unwrap_or_default().to_string();
            plain("this binary's path", &exe_text)?;
            // The unit runs this file as root: nobody but the owner of ROOT (root on a device)
            // may be able to replace it.
            let owner = {
                use std::os::unix::fs::MetadataExt as _;
                std::fs::metadata(root).map_or(0, |m| m.uid())
            };
            if let Some(why) = replaceable_by_others(&exe, owner) {
                bail!(
                    "{exe_text} would run as root from the unit, but {why}: copy the binary where \
                     only root may write (`install -o root -g root -m 0755 {exe_text} /usr/local/bin/ferry`) \
                     and run install from there, or install the ferry-common and ferry-agent packages"
                );
            }
            // A unit of the administrator's own is theirs: replaced, it would be marked as
            // install's and removed by uninstall.
            if let Ok(t) = std::fs::read_to_string(under(root, LOCAL_UNIT))
                && !t.starts_with(MARK)
            {
                bail!(
                    "{} exists and `ferry agent install` did not write it: not replacing it \
                     (move it away to let install write its own)",
                    shown(LOCAL_UNIT)
                );
            }
            Unit::Local(exe_text)
        }
    };
    let config_dir = under(root, CONFIG_DIR);
    std::fs::create_dir_all(&config_dir).with_context(|| {
        format!(
            "cannot create {} (ferry agent install writes the agent's configuration there: run it as root)",
            config_dir.display()
        )
    })?;
    // Each step is printed when done: a later failure leaves the earlier ones said.
    let mut did = Said::default();
    // The key first: agent.env is what lets the unit start.
    let psk_rel = format!("{CONFIG_DIR}/psk");
    atomic_write(
        &under(root, &psk_rel),
        format!("{}\n", psk.expose()).as_bytes(),
        0o600,
    )
    .map_err(anyhow::Error::msg)?;
    did.say(format!(
        "wrote {} (0600, root only): the pre-shared key, handed to the agent as a systemd credential",
        shown(&psk_rel)
    ));
    let env_rel = format!("{CONFIG_DIR}/agent.env");
    let env = format!(
        "# Written by `ferry agent install`; read by {UNIT_NAME}. `ferry agent uninstall` removes it.\n\
         FERRY_AGENT_SERVER={server}\n\
         FERRY_AGENT_FINGERPRINT={}\n\
         FERRY_AGENT_STATE_DIR={state_text}\n",
        a.fingerprint
    );
    atomic_write(&under(root, &env_rel), env.as_bytes(), 0o644).map_err(anyhow::Error::msg)?;
    did.say(format!(
        "wrote {} (0644): server {server}, fingerprint {}, state directory {state_text}",
        shown(&env_rel),
        a.fingerprint
    ));

    match &unit {
        Unit::Packaged(p) => did.say(format!("unit: {} (from the ferry-agent package)", shown(p))),
        Unit::Local(exe_text) => {
            let unit = UNIT.replace(
                "ExecStart=/usr/bin/ferry ",
                &format!("ExecStart={exe_text} "),
            );
            let path = under(root, LOCAL_UNIT);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            atomic_write(&path, format!("{MARK}{unit}").as_bytes(), 0o644)
                .map_err(anyhow::Error::msg)?;
            did.say(format!(
                "wrote {} (0644): the unit, running {exe_text}",
                shown(LOCAL_UNIT)
            ));
        }
    }

    if systemd_running(root) {
        let mut steps = vec![vec!["daemon-reload"], vec!["enable", UNIT_NAME]];
        if !a.no_start {
            // restart, not start: a running agent picks up a new configuration.
            steps.push(vec!["restart", UNIT_NAME]);
        }
        for s in steps {
            systemctl(&s)?;
            did.say(format!("ran: systemctl {}", s.join(" ")));
        }
        if a.no_start {
            did.say(format!(
                "not started (--no-start): systemctl start {UNIT_NAME}"
            ));
        }
    } else if root != Path::new("/") {
        did.say(format!(
            "skipped systemctl: writing into {}, not this running system",
            root.display()
        ));
    } else {
        did.say(format!(
            "skipped systemctl: systemd is not running here (no /run/systemd/system), so nothing was enabled or started; where it runs: systemctl enable --now {UNIT_NAME}; else run the agent yourself: ferry agent run --server {server} --fingerprint {} --psk-file {}",
            a.fingerprint,
            shown(&psk_rel)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn uninstall(a: UninstallArgs) -> Result<ExitCode> {
    let root = &a.root;
    // Each step is printed when done: a later failure leaves the earlier ones said.
    let mut did = Said::default();
    let env_path = under(root, &format!("{CONFIG_DIR}/agent.env"));
    let state_dir = std::fs::read_to_string(&env_path)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("FERRY_AGENT_STATE_DIR="))
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));

    let local = under(root, LOCAL_UNIT);
    let any_unit = local.is_file() || PACKAGED_UNITS.iter().any(|p| under(root, p).is_file());
    if systemd_running(root) && any_unit {
        systemctl(&["disable", "--now", UNIT_NAME])?;
        did.say(format!("ran: systemctl disable --now {UNIT_NAME}"));
    }
    match std::fs::read_to_string(&local) {
        Ok(t) if t.starts_with(MARK) => {
            remove(&local)?;
            did.say(format!("removed {}", shown(LOCAL_UNIT)));
        }
        Ok(_) => did.say(format!(
            "left {} alone: `ferry agent install` did not write it",
            shown(LOCAL_UNIT)
        )),
        Err(_) => {}
    }
    if systemd_running(root) && any_unit {
        systemctl(&["daemon-reload"])?;
        did.say("ran: systemctl daemon-reload".into());
    }
    for name in ["agent.env", "psk"] {
        let rel = format!("{CONFIG_DIR}/{name}");
        if remove(&under(root, &rel))? {
            did.say(format!("removed {}", shown(&rel)));
        }
    }
    // The directory goes when nothing else is in it.
    if std::fs::remove_dir(under(root, CONFIG_DIR)).is_ok() {
        did.say(format!("removed {}/", shown(CONFIG_DIR)));
    }

    let rel_state = state_dir.strip_prefix("/").unwrap_or(&state_dir);
    let state = root.join(rel_state);
    if state.exists() {
        if !a.purge {
            did.say(format!(
                "kept {}: its journal is what `ferry agent rollback --state-dir {}` undoes the last migration with (--purge deletes it)",
                state_dir.display(),
                state_dir.display()
            ));
        } else if ferry_agent::state::StateDir::existing(&state).is_err()
            && std::fs::read_dir(&state).is_ok_and(|mut d| d.next().is_some())
        {
            bail!(
                "{} is not an agent state directory (no agent.json, no status.json): not deleting it",
                state_dir.display()
            );
        } else {
            std::fs::remove_dir_all(&state)
                .with_context(|| format!("cannot delete {}", state.display()))?;
            did.say(format!("deleted {} (--purge)", state_dir.display()));
        }
    }
    if !did.any {
        did.say("nothing to remove: the agent is not installed here".into());
    }
    Ok(ExitCode::SUCCESS)
}

/// Why someone other than `owner` (the owner of ROOT: root on a device) or root could replace
/// the file at `path`, which a unit would run as root: it or a directory above it belongs to
/// another user, or is writable by its group or by others (a sticky directory, such as /tmp,
/// excepted: only an entry's owner may rename or remove it there). None when nobody could.
fn replaceable_by_others(path: &Path, owner: u32) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let mut p = Some(path);
    while let Some(c) = p {
        let m = match std::fs::symlink_metadata(c) {
            Ok(m) => m,
            Err(e) => return Some(format!("{} cannot be checked ({e})", c.display())),
        };
        if m.uid() != 0 && m.uid() != owner {
            return Some(format!("{} belongs to uid {}", c.display(), m.uid()));
        }
        let sticky_dir = m.is_dir() && m.mode() & 0o1000 != 0;
        if m.mode() & 0o022 != 0 && !sticky_dir {
            return Some(format!(
                "{} is writable by its group or others (mode {:o})",
                c.display(),
                m.mode() & 0o7777
            ));
        }
        p = c.parent();
    }
    None
}

/// The unit that runs the agent: the package's, or one install writes running this binary.
enum Unit {
    Packaged(&'static str),
    Local(String),
}

/// What install and uninstall did, printed as it happens.
#[derive(Default)]
struct Said {
    any: bool,
}

impl Said {
    fn say(&mut self, line: String) {
        self.any = true;
        println!("{line}");
    }
}

/// Removes a file; false when it was not there.
fn remove(p: &Path) -> Result<bool> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", p.display())),
    }
}

fn systemctl(args: &[&str]) -> Result<()> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .with_context(|| format!("cannot run systemctl {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "systemctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
