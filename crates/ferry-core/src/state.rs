//! The states the API reports as strings, as enums with the same string forms on the wire: a
//! cycle's status and phase, an agent's state, a migration order's mode.
//!
//! Store rows keep these as text (the database holds them so); the typed accessors on the
//! [`crate::wire`] rows parse them, failing with [`UnknownState`] on a value this build does not
//! know.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A state string no variant of the enum names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}` (expected one of: {expected})")]
pub struct UnknownState {
    pub what: &'static str,
    pub value: String,
    pub expected: String,
}

macro_rules! state_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name {
            $($(#[$vm])* $v),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $s),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $($s => Ok($name::$v),)+
                    _ => Err(UnknownState {
                        what: $what,
                        value: s.to_string(),
                        expected: [$($s),+].join(", "),
                    }),
                }
            }
        }
    };
}

state_enum!(
    /// Where a sync cycle stands.
    CycleStatus, "cycle status" {
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        /// The server running it stopped before it finished.
        Aborted = "aborted",
    }
);

state_enum!(
    /// The phase a sync cycle is in (`done` once it succeeded).
    CyclePhase, "cycle phase" {
        Import = "import",
        Sync = "sync",
        Export = "export",
        Done = "done",
    }
);

state_enum!(
    /// An enrolled agent's state: set by the server at enrollment (`enrolled`, `replaced` when the
    /// device enrolled again), then as the agent reports it at each check-in.
    AgentState, "agent state" {
        Enrolled = "enrolled",
        Replaced = "replaced",
        /// Pending approval of a held enrollment.
        PendingApproval = "pending-approval",
        Idle = "idle",
        /// A migration was offered; the user may start or snooze it.
        Offered = "offered",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        RolledBack = "rolled-back",
        Unreachable = "unreachable",
        /// The run succeeded and its post-flight proved the result.
        Verified = "verified",
        /// The run succeeded but its post-flight found what it should not (evidence on the
        /// server).
        VerificationFailed = "verification-failed",
        /// A failed run whose rollback did not complete, or whose state after the rollback is
        /// not the one the run found.
        RecoveryRequired = "recovery-required",
    }
);

state_enum!(
    /// How a migration order is handed to a device.
    MigrationMode, "migration mode" {
        /// The user may start or snooze it.
        Offered = "offered",
        /// It starts within 15 minutes when nobody is signed in.
        Enforced = "enforced",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_forms_are_the_wire_forms() {
        for s in CycleStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(s.as_str().parse::<CycleStatus>().unwrap(), *s);
        }
        for s in CyclePhase::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in AgentState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(s.as_str().parse::<AgentState>().unwrap(), *s);
        }
        for s in MigrationMode::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        let e = "paused".parse::<CycleStatus>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown cycle status `paused` (expected one of: running, succeeded, failed, aborted)"
        );
    }
}
