//! Runbooks: the instructions a device's migration agent carries out (the seed's "Create
//! Runbooks"), with every section of PRODUCT §3, and their validation. Errors name the field
//! (`device_state.join`), so the console and the CLI can point at it.

use serde::{Deserialize, Serialize};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    /// Seen in reports, dashboards and logs ("Include the word Pre-Req in a prerequisite's name").
    pub name: String,
    pub source_directories: Vec<String>,
    pub target_directories: Vec<String>,
    /// Runbooks that must have succeeded on the device before this one starts.
    #[serde(default)]
    pub prerequisites: Vec<String>,
    #[serde(default)]
    pub startup: Startup,
    #[serde(default)]
    pub user_experience: UserExperience,
    #[serde(default)]
    pub device_state: DeviceState,
    #[serde(default)]
    pub permission_updates: PermissionUpdates,
    #[serde(default)]
    pub app_reconfiguration: AppReconfiguration,
    #[serde(default)]
    pub completion: Completion,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserInteraction {
    /// "Silent Mode": nothing is shown.
    Silent,
    /// "Show Progress".
    #[default]
    ShowProgress,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Startup {
    pub user_interaction: UserInteraction,
    pub do_not_run_startup: bool,
    /// A local account kept usable should the migration fail (e.g. `.\ferry-fallback`).
    pub admin_fallback_account: Option<String>,
    pub pre_migration_scripts: Vec<Script>,
    pub legal_notice: Option<LegalNotice>,
    /// Nobody can sign in while the migration runs.
    pub prevent_login: bool,
    /// A lock screen image (a path or URL on the device); none: ferry's default.
    pub lock_screen_image: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegalNotice {
    pub title: String,
    pub text: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    pub name: String,
    /// `powershell`, `cmd`, `sh` or `bash`.
    pub interpreter: String,
    pub body: String,
    /// Seconds before the script is stopped and counted as failed (default 600).
    #[serde(default = "default_script_timeout")]
    pub timeout_seconds: u32,
    /// Whether a failure stops the migration (default true).
    #[serde(default = "yes")]
    pub required: bool,
}

fn default_script_timeout() -> u32 {
    600
}

fn yes() -> bool {
    true
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserExperience {
    /// Shown when the migration is offered (Available From) and while it runs.
    pub message: Option<String>,
    /// How often the user may snooze an offered migration before it is enforced (none: no limit
    /// until Enforced After).
    pub max_snoozes: Option<u32>,
    /// Minutes one snooze defers the offer (default 60).
    pub snooze_minutes: Option<u32>,
    /// Restart the device when the migration has finished.
    pub restart_when_done: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JoinKind {
    #[default]
    None,
    /// Active Directory.
    Ad,
    /// Microsoft Entra ID.
    EntraId,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceState {
    /// "Remove From": leave the source domain or tenant.
    pub remove_from: JoinKind,
    /// "Domain Join": join the target.
    pub join: JoinKind,
    /// Enrol the device in the target's Intune after an Entra join.
    pub enrol_in_intune: bool,
    /// Entra join: which stored bulk enrolment token of the target directory to use: `latest`
    /// (the newest valid one, the default) or a token id.
    pub bulk_enrolment_token: Option<String>,
    /// On Linux, the commands that leave and join (`realm leave`, `realm join …`).
    pub leave_command: Option<String>,
    pub join_command: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PermissionMode {
    /// "Don't update permissions".
    #[default]
    None,
    /// Target principals gain the rights of their source principals, which keep theirs.
    Add,
    /// Source principals are replaced by their target principals.
    AddAndRemove,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PermissionUpdates {
    pub mode: PermissionMode,
    /// Paths to re-permission (default: the profiles' home folders).
    pub paths: Vec<String>,
    /// Areas to leave alone (glob patterns, e.g. `**/node_modules`, `C:\Windows\**`).
    pub ignore: Vec<String>,
    /// Run although some harvested profiles have no translation (their files keep their
    /// owners; the device's pre-flight says which). Without it such a device is not ready.
    pub skip_unresolved_profiles: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppReconfiguration {
    pub reconfigure_applications: bool,
    /// "Make OneDrive Files Cloud Only".
    pub onedrive_cloud_only: bool,
    /// On Linux, the commands that reconfigure applications for the target (run when
    /// `reconfigure_applications` is set), with the translation in their environment.
    pub commands: Vec<Script>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Completion {
    pub do_not_run_completion: bool,
    pub post_migration_scripts: Vec<Script>,
    /// Commands that prove the result after the last step (post-flight), e.g. that `realm list`
    /// names the target: each must exit 0, or the device is `verification-failed`.
    pub check_commands: Vec<Script>,
}

/// What a runbook is checked against: the configured directories and their kinds.
pub struct RunbookContext<'a> {
    /// (name, kind: `ldap` | `file` | `graph`).
    pub directories: &'a [(&'a str, &'a str)],
    /// Names of the other stored runbooks, with their prerequisites.
    pub runbooks: &'a [(&'a str, &'a [String])],
}

/// A validation error: the field and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl Runbook {
    /// Checks every field; the first problem is returned, naming its field.
    pub fn validate(&self, cx: &RunbookContext<'_>) -> Result<(), FieldError> {
        let err = |field: &str, message: String| {
            Err(FieldError {
                field: field.into(),
                message,
            })
        };
        if let Err(e) = crate::names::check_name(&self.name) {
            return err("name", e);
        }
        let kind_of = |d: &str| {
            cx.directories
                .iter()
                .find(|(n, _)| *n == d)
                .map(|(_, k)| *k)
        };
        for (field, dirs) in [
            ("source_directories", &self.source_directories),
            ("target_directories", &self.target_directories),
        ] {
            if dirs.is_empty() {
                return err(field, "name at least one configured directory".into());
            }
            for d in dirs {
                if kind_of(d).is_none() {
                    return err(field, format!("`{d}` is not a configured directory"));
                }
            }
        }
        for (i, p) in self.prerequisites.iter().enumerate() {
            if p == &self.name {
                return err(
                    &format!("prerequisites[{i}]"),
                    "a runbook cannot be its own prerequisite".into(),
                );
            }
            if !cx.runbooks.iter().any(|(n, _)| n == p) {
                return err(
                    &format!("prerequisites[{i}]"),
                    format!("there is no runbook named `{p}`"),
                );
            }
        }
        if let Some(cycle) = self.prerequisite_cycle(cx) {
            return err(
                "prerequisites",
                format!("prerequisites would form a cycle: {}", cycle.join(" → ")),
            );
        }
        let s = &self.startup;
        if let Some(a) = &s.admin_fallback_account
            && a.trim().is_empty()
        {
            return err(
                "startup.admin_fallback_account",
                "give an account name or leave it out".into(),
            );
        }
        if let Some(n) = &s.legal_notice {
            if n.title.trim().is_empty() {
                return err("startup.legal_notice.title", "must not be empty".into());
            }
            if n.text.trim().is_empty() || n.text.len() > 16_384 {
                return err(
                    "startup.legal_notice.text",
                    "must be 1–16384 characters".into(),
                );
            }
        }
        if s.legal_notice.is_some() && s.user_interaction == UserInteraction::Silent {
            return err(
                "startup.legal_notice",
                "a legal notice is shown to the user, which Silent Mode does not do: choose show-progress or remove the notice".into(),
            );
        }
        scripts("startup.pre_migration_scripts", &s.pre_migration_scripts)?;
        scripts(
            "completion.post_migration_scripts",
            &self.completion.post_migration_scripts,
        )?;
        scripts(
            "app_reconfiguration.commands",
            &self.app_reconfiguration.commands,
        )?;
        if !self.app_reconfiguration.commands.is_empty()
            && !self.app_reconfiguration.reconfigure_applications
        {
            return err(
                "app_reconfiguration.commands",
                "commands run only when reconfigure_applications is set".into(),
            );
        }
        if let Some(m) = self.user_experience.snooze_minutes
            && !(1..=10_080).contains(&m)
        {
            return err(
                "user_experience.snooze_minutes",
                format!("{m} is out of range: 1–10080 minutes (a week)"),
            );
        }
        let d = &self.device_state;
        if d.join == JoinKind::EntraId {
            let graph_target = self
                .target_directories
                .iter()
                .any(|t| kind_of(t) == Some("graph"));
            if !graph_target {
                return err(
                    "device_state.join",
                    "joining Entra ID needs a Microsoft Entra (kind = \"graph\") target directory"
                        .into(),
                );
            }
            match d.bulk_enrolment_token.as_deref() {
                None | Some("latest") => {}
                Some(id) if id.parse::<i64>().is_ok() => {}
                Some(other) => {
                    return err(
                        "device_state.bulk_enrolment_token",
                        format!("`{other}` is not `latest` or a token id"),
                    );
                }
            }
        } else if d.bulk_enrolment_token.is_some() {
            return err(
                "device_state.bulk_enrolment_token",
                "a bulk enrolment token is only used to join Entra ID (device_state.join = \"entra-id\")".into(),
            );
        }
        if d.enrol_in_intune && d.join != JoinKind::EntraId {
            return err(
                "device_state.enrol_in_intune",
                "Intune enrolment follows an Entra ID join: set device_state.join = \"entra-id\""
                    .into(),
            );
        }
        if d.join == JoinKind::Ad && d.join_command.is_none() {
            // Windows joins AD itself; Linux needs the command. Both are allowed: nothing to check.
        }
        for (field, c) in [
            ("device_state.leave_command", &d.leave_command),
            ("device_state.join_command", &d.join_command),
        ] {
            if let Some(c) = c
                && c.trim().is_empty()
            {
                return err(field, "give the command or leave it out".into());
            }
        }
        let p = &self.permission_updates;
        if p.mode == PermissionMode::None && !p.paths.is_empty() {
            return err(
                "permission_updates.paths",
                "paths are re-permissioned only when mode is add or add-and-remove".into(),
            );
        }
        for (i, path) in p.paths.iter().enumerate() {
            if path.trim().is_empty()
                || !(path.starts_with('/') || path.contains(":\\") || path.starts_with("\\\\"))
            {
                return err(
                    &format!("permission_updates.paths[{i}]"),
                    format!(
                        "`{path}` is not an absolute path (/home, C:\\Users or \\\\server\\share)"
                    ),
                );
            }
        }
        for (i, g) in p.ignore.iter().enumerate() {
            if g.trim().is_empty() {
                return err(
                    &format!("permission_updates.ignore[{i}]"),
                    "an empty pattern".into(),
                );
            }
        }
        Ok(())
    }

    /// The chain of names that loops back, if adding this runbook's prerequisites makes a cycle.
    fn prerequisite_cycle(&self, cx: &RunbookContext<'_>) -> Option<Vec<String>> {
        let deps = |n: &str| -> Vec<String> {
            if n == self.name {
                self.prerequisites.clone()
            } else {
                cx.runbooks
                    .iter()
                    .find(|(m, _)| *m == n)
                    .map(|(_, p)| p.to_vec())
                    .unwrap_or_default()
            }
        };
        fn walk(
            n: &str,
            path: &mut Vec<String>,
            deps: &dyn Fn(&str) -> Vec<String>,
        ) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|p| p == n) {
                let mut c = path[i..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            path.push(n.to_string());
            for d in deps(n) {
                if let Some(c) = walk(&d, path, deps) {
                    return Some(c);
                }
            }
            path.pop();
            None
        }
        walk(&self.name, &mut Vec::new(), &deps)
    }

    /// The steps a device will run, in order, as the device what-if shows them.
    pub fn steps(&self) -> Vec<String> {
        let mut out = Vec::new();
        let s = &self.startup;
        if !s.do_not_run_startup {
            if s.legal_notice.is_some() {
                out.push("show the legal notice".into());
            }
            if s.prevent_login {
                out.push("prevent sign-in while the migration runs".into());
            }
            if let Some(a) = &s.admin_fallback_account {
                out.push(format!("keep the admin fallback account {a}"));
            }
            for sc in &s.pre_migration_scripts {
                out.push(format!(
                    "run pre-migration script `{}` ({})",
                    sc.name, sc.interpreter
                ));
            }
        }
        if self.app_reconfiguration.onedrive_cloud_only {
            out.push("make OneDrive files cloud-only".into());
        }
        let d = &self.device_state;
        match d.remove_from {
            JoinKind::None => {}
            JoinKind::Ad => out.push("leave the source Active Directory domain".into()),
            JoinKind::EntraId => out.push("leave the source Entra ID tenant".into()),
        }
        match self.permission_updates.mode {
            PermissionMode::None => {}
            PermissionMode::Add => out.push("re-permission files: add target principals".into()),
            PermissionMode::AddAndRemove => out
                .push("re-permission files: replace source principals by target principals".into()),
        }
        match d.join {
            JoinKind::None => {}
            JoinKind::Ad => out.push("join the target Active Directory domain".into()),
            JoinKind::EntraId => {
                out.push("join the target Entra ID tenant with the bulk enrolment token".into())
            }
        }
        if d.enrol_in_intune {
            out.push("enrol in the target's Intune".into());
        }
        if self.app_reconfiguration.reconfigure_applications {
            out.push("reconfigure applications for the target tenant".into());
            for sc in &self.app_reconfiguration.commands {
                out.push(format!(
                    "run app reconfiguration `{}` ({})",
                    sc.name, sc.interpreter
                ));
            }
        }
        if !self.completion.do_not_run_completion {
            for sc in &self.completion.post_migration_scripts {
                out.push(format!(
                    "run post-migration script `{}` ({})",
                    sc.name, sc.interpreter
                ));
            }
        }
        if self.user_experience.restart_when_done {
            out.push("restart the device".into());
        }
        out
    }
}

fn scripts(field: &str, list: &[Script]) -> Result<(), FieldError> {
    for (i, s) in list.iter().enumerate() {
        let f = |k: &str| format!("{field}[{i}].{k}");
        let e = |k: &str, m: String| {
            Err(FieldError {
                field: f(k),
                message: m,
            })
        };
        if s.name.trim().is_empty() {
            return e("name", "must not be empty".into());
        }
        if !["powershell", "cmd", "sh", "bash"].contains(&s.interpreter.as_str()) {
            return e(
                "interpreter",
                format!("`{}` is not powershell, cmd, sh or bash", s.interpreter),
            );
        }
        if s.body.trim().is_empty() {
            return e("body", "the script is empty".into());
        }
        if s.body.len() > 1 << 20 {
            return e("body", "scripts are limited to 1 MiB".into());
        }
        if !(1..=86_400).contains(&s.timeout_seconds) {
            return e(
                "timeout_seconds",
                format!("{} is out of range: 1–86400", s.timeout_seconds),
            );
        }
    }
    Ok(())
}

/// What a step of a device run does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// The runbook's prerequisites succeeded on this device (in this run or an earlier one).
    Prerequisites,
    LegalNotice,
    PreventLogin,
    PreScript {
        index: usize,
    },
    Leave,
    Repermission,
    HomeReassociation,
    Join,
    OnedriveCloudOnly,
    AppCommand {
        index: usize,
    },
    PostScript {
        index: usize,
    },
    /// The runbook is recorded as succeeded on this device.
    RunbookDone,
    /// Sign-in allowed again and the legal notice taken down (runs even after a failure).
    RestoreLogin,
    Done,
}

/// One step of a run as planned: its id (`RUNBOOK/action`, as events and logs name it), its
/// runbook and what it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedStep {
    pub id: String,
    pub runbook: Option<String>,
    pub action: Action,
}

/// The steps of a run of these runbooks (prerequisites first), in the order they run. The
/// agent runs this plan; the server checks the events it is sent against the same plan.
pub fn plan_steps(runbooks: &[Runbook]) -> Vec<PlannedStep> {
    let mut steps = Vec::new();
    let mut push = |rb: Option<&str>, action: Action, name: String| {
        steps.push(PlannedStep {
            id: match rb {
                Some(r) => format!("{r}/{name}"),
                None => name,
            },
            runbook: rb.map(str::to_string),
            action,
        })
    };
    let mut login_guarded = false;
    for r in runbooks {
        let n = Some(r.name.as_str());
        push(n, Action::Prerequisites, "prerequisites".into());
        let s = &r.startup;
        if !s.do_not_run_startup {
            if s.legal_notice.is_some() {
                push(n, Action::LegalNotice, "legal-notice".into());
                login_guarded = true;
            }
            if s.prevent_login {
                push(n, Action::PreventLogin, "prevent-login".into());
                login_guarded = true;
            }
            for i in 0..s.pre_migration_scripts.len() {
                push(
                    n,
                    Action::PreScript { index: i },
                    format!("pre-script-{}", i + 1),
                );
            }
        }
        if r.device_state.remove_from != JoinKind::None {
            push(n, Action::Leave, "leave".into());
        }
        if r.permission_updates.mode != PermissionMode::None {
            push(n, Action::Repermission, "repermission".into());
            push(n, Action::HomeReassociation, "home-reassociation".into());
        }
        if r.device_state.join != JoinKind::None {
            push(n, Action::Join, "join".into());
        }
        if r.app_reconfiguration.onedrive_cloud_only {
            push(n, Action::OnedriveCloudOnly, "onedrive-cloud-only".into());
        }
        if r.app_reconfiguration.reconfigure_applications {
            for i in 0..r.app_reconfiguration.commands.len() {
                push(n, Action::AppCommand { index: i }, format!("app-{}", i + 1));
            }
        }
        if !r.completion.do_not_run_completion {
            for i in 0..r.completion.post_migration_scripts.len() {
                push(
                    n,
                    Action::PostScript { index: i },
                    format!("post-script-{}", i + 1),
                );
            }
        }
        push(n, Action::RunbookDone, "runbook-done".into());
    }
    if login_guarded {
        push(None, Action::RestoreLogin, "restore-login".into());
    }
    push(None, Action::Done, "done".into());
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIRS: &[(&str, &str)] = &[
        ("contoso", "graph"),
        ("fabrikam", "graph"),
        ("corp", "ldap"),
    ];

    fn main_runbook() -> Runbook {
        serde_json::from_str(
            r#"{
            "name": "Main", "source_directories": ["contoso"], "target_directories": ["fabrikam"],
            "prerequisites": ["Pre-Req OneDrive"],
            "startup": {"user_interaction": "show-progress", "admin_fallback_account": ".\\ferry-admin",
                "legal_notice": {"title": "Migration", "text": "Your PC moves to Fabrikam tonight."}, "prevent_login": true,
                "pre_migration_scripts": [{"name": "stop sync", "interpreter": "powershell", "body": "Stop-Process -Name OneDrive"}]},
            "device_state": {"remove_from": "entra-id", "join": "entra-id", "enrol_in_intune": true, "bulk_enrolment_token": "latest"},
            "permission_updates": {"mode": "add-and-remove", "paths": ["C:\\Users", "D:\\Data"], "ignore": ["**\\AppData\\Local\\Temp"]},
            "app_reconfiguration": {"reconfigure_applications": true},
            "completion": {"post_migration_scripts": [{"name": "notify", "interpreter": "cmd", "body": "echo done"}]}
        }"#,
        )
        .unwrap()
    }

    fn pre() -> (&'static str, Vec<String>) {
        ("Pre-Req OneDrive", vec![])
    }

    #[test]
    fn the_seeds_main_runbook_is_valid_and_lists_its_steps() {
        let p = pre();
        let rbs = [(p.0, p.1.as_slice())];
        let cx = RunbookContext {
            directories: DIRS,
            runbooks: &rbs,
        };
        let r = main_runbook();
        r.validate(&cx).unwrap();
        let steps = r.steps();
        assert_eq!(steps.first().unwrap(), "show the legal notice");
        assert!(steps.contains(
            &"join the target Entra ID tenant with the bulk enrolment token".to_string()
        ));
        assert!(steps.last().unwrap().contains("notify"));
    }

    #[test]
    fn errors_name_the_field() {
        let p = pre();
        let rbs = [(p.0, p.1.as_slice())];
        let cx = RunbookContext {
            directories: DIRS,
            runbooks: &rbs,
        };
        type Change = Box<dyn Fn(&mut Runbook)>;
        let cases: Vec<(Change, &str, &str)> = vec![
            (Box::new(|r| r.name = " ".into()), "name", "white space"),
            (Box::new(|r| r.name = "../etc".into()), "name", "`/`"),
            (Box::new(|r| r.name = "a\r\nb".into()), "name", "CR"),
            (
                Box::new(|r| r.source_directories = vec!["nope".into()]),
                "source_directories",
                "not a configured",
            ),
            (
                Box::new(|r| r.target_directories.clear()),
                "target_directories",
                "at least one",
            ),
            (
                Box::new(|r| r.prerequisites = vec!["Ghost".into()]),
                "prerequisites[0]",
                "no runbook named `Ghost`",
            ),
            (
                Box::new(|r| r.prerequisites = vec!["Main".into()]),
                "prerequisites[0]",
                "its own",
            ),
            (
                Box::new(|r| r.target_directories = vec!["corp".into()]),
                "device_state.join",
                "graph",
            ),
            (
                Box::new(|r| r.device_state.bulk_enrolment_token = Some("newest".into())),
                "device_state.bulk_enrolment_token",
                "`newest`",
            ),
            (
                Box::new(|r| {
                    r.device_state.join = JoinKind::Ad;
                }),
                "device_state.bulk_enrolment_token",
                "only used to join Entra",
            ),
            (
                Box::new(|r| {
                    r.device_state.join = JoinKind::None;
                    r.device_state.bulk_enrolment_token = None;
                }),
                "device_state.enrol_in_intune",
                "follows an Entra ID join",
            ),
            (
                Box::new(|r| r.permission_updates.paths.push("relative\\dir".into())),
                "permission_updates.paths[2]",
                "not an absolute path",
            ),
            (
                Box::new(|r| {
                    r.permission_updates.mode = PermissionMode::None;
                }),
                "permission_updates.paths",
                "only when mode",
            ),
            (
                Box::new(|r| r.startup.pre_migration_scripts[0].interpreter = "python".into()),
                "startup.pre_migration_scripts[0].interpreter",
                "`python`",
            ),
            (
                Box::new(|r| r.completion.post_migration_scripts[0].body = "  ".into()),
                "completion.post_migration_scripts[0].body",
                "empty",
            ),
            (
                Box::new(|r| r.startup.user_interaction = UserInteraction::Silent),
                "startup.legal_notice",
                "Silent Mode",
            ),
            (
                Box::new(|r| r.user_experience.snooze_minutes = Some(0)),
                "user_experience.snooze_minutes",
                "out of range",
            ),
        ];
        for (change, field, needle) in cases {
            let mut r = main_runbook();
            change(&mut r);
            let e = r.validate(&cx).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.message.contains(needle), "{e}");
        }
    }

    #[test]
    fn prerequisite_cycles_are_refused() {
        // A → B → C exist; making C depend on A closes a loop.
        let a = vec!["B".to_string()];
        let b = vec!["C".to_string()];
        let rbs = [("A", a.as_slice()), ("B", b.as_slice()), ("C", &[][..])];
        let cx = RunbookContext {
            directories: DIRS,
            runbooks: &rbs,
        };
        let mut c = main_runbook();
        c.name = "C".into();
        c.prerequisites = vec!["A".into()];
        let e = c.validate(&cx).unwrap_err();
        assert_eq!(e.field, "prerequisites");
        assert!(e.message.contains("C → A → B → C"), "{e}");
        c.prerequisites = vec![];
        c.validate(&cx).unwrap();
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = serde_json::from_str::<Runbook>(
            r#"{"name": "x", "source_directories": [], "target_directories": [], "startup": {"silent": true}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `silent`"), "{e}");
    }
}
