//! A runbook's Windows steps as a PowerShell script an operator can read before running it:
//! the same steps, in the same order, that the agent takes on a device.
//!
//! Every value from the runbook (paths, names, notices, script bodies) reaches the script only
//! as a single-quoted literal (quotes doubled, PowerShell's typographic quotes too), a
//! single-quoted here-string, or — when it holds characters neither can carry — Base64 decoded at
//! run time; in comments it is reduced to one printable line. Nothing from the runbook is ever
//! interpolated or evaluated.

use crate::runbook::{JoinKind, PermissionMode, Runbook, Script};
use std::fmt::Write as _;

/// The characters PowerShell takes as a single quote.
const QUOTES: [char; 5] = ['\'', '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}'];

/// A PowerShell expression whose value is exactly `s`.
pub fn ps_string(s: &str) -> String {
    if s.chars()
        .any(|c| c.is_control() && c != '\t' || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return format!(
            "[Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{}'))",
            base64(s.as_bytes())
        );
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if QUOTES.contains(&c) {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A multi-line value: a single-quoted here-string when it can be one, else [`ps_string`].
fn ps_block(s: &str) -> String {
    let body = s.strip_suffix('\n').unwrap_or(s);
    let ends_here = body
        .split('\n')
        .any(|l| l.starts_with(QUOTES) && l.chars().nth(1) == Some('@'));
    let controls = body
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n'));
    if ends_here || controls || body.is_empty() {
        return ps_string(s);
    }
    format!("@'\n{body}\n'@")
}

/// Text for a `#` comment: one line, no control characters.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const PRELUDE: &str = r#"$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
New-Item -ItemType Directory -Force -Path $WorkDir | Out-Null
Start-Transcript -LiteralPath (Join-Path $WorkDir 'transcript.log') -Append | Out-Null
$Done = Join-Path $WorkDir 'steps.done'

# A step runs once: when it succeeds its name goes to steps.done, and a second run skips it.
function Invoke-Step([string]$Name, [scriptblock]$Body) {
    if ((Test-Path -LiteralPath $Done) -and (@(Get-Content -LiteralPath $Done) -contains $Name)) {
        Write-Host "= $Name (done earlier)"
        return
    }
    Write-Host "> $Name"
    & $Body
    Add-Content -LiteralPath $Done -Value $Name
}

# Runs a runbook script from a file in $WorkDir, stopped after its timeout.
function Invoke-RunbookScript([string]$Name, [string]$Interpreter, [string]$Body, [int]$TimeoutSeconds, [bool]$Required) {
    switch ($Interpreter) {
        'powershell' { $ext = '.ps1'; $exe = 'powershell.exe'; $pre = @('-NoProfile', '-ExecutionPolicy', 'Bypass', '-File') }
        'cmd' { $ext = '.cmd'; $exe = 'cmd.exe'; $pre = @('/d', '/c') }
        default { throw "script $Name uses $Interpreter, which does not run on Windows" }
    }
    $file = Join-Path $WorkDir ('script-' + [guid]::NewGuid().ToString('n') + $ext)
    [IO.File]::WriteAllText($file, $Body, (New-Object Text.UTF8Encoding $true))
    $argv = @($pre | ForEach-Object { $_ }) + @('"' + $file + '"')
    $p = Start-Process -FilePath $exe -ArgumentList $argv -PassThru -NoNewWindow
    if (-not $p.WaitForExit($TimeoutSeconds * 1000)) {
        & taskkill.exe /PID $p.Id /T /F | Out-Null
        $why = "did not finish in $TimeoutSeconds s"
    } elseif ($p.ExitCode -ne 0) {
        $why = "exited with $($p.ExitCode)"
    } else {
        return
    }
    if ($Required) { throw "script $Name $why" }
    Write-Warning "script $Name $why (not required; going on)"
}

# The SID map: source SID -> target SID.
$Map = [ordered]@{}
foreach ($row in Import-Csv -LiteralPath $MapFile) {
    $names = $row.PSObject.Properties.Name
    $s = if ($names -contains 'source_sid') { $row.source_sid } else { $row.source }
    $t = if ($names -contains 'target_sid') { $row.target_sid } else { $row.target }
    if ($s -like 'S-1-*' -and $t -like 'S-1-*') { $Map[$s] = $t }
}
if ($Map.Count -eq 0) { throw "$MapFile maps no SIDs" }
$ProfileList = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList'
"#;

fn script_call(out: &mut String, step: &str, s: &Script) {
    let _ = writeln!(
        out,
        "# {}: {} ({}), at most {} s{}",
        step,
        comment(&s.name),
        comment(&s.interpreter),
        s.timeout_seconds,
        if s.required { "" } else { ", not required" }
    );
    let _ = writeln!(
        out,
        "Invoke-Step '{step}' {{\n    Invoke-RunbookScript -Name {} -Interpreter {} -TimeoutSeconds {} -Required ${} -Body {}\n}}\n",
        ps_string(&s.name),
        ps_string(&s.interpreter),
        s.timeout_seconds,
        s.required,
        ps_block(&s.body)
    );
}

/// Renders the runbook for Windows. `version` names the ferry that rendered it.
pub fn render_windows(rb: &Runbook, version: &str) -> String {
    let mut o = String::with_capacity(8192);
    let d = &rb.device_state;
    let p = &rb.permission_updates;
    let _ = writeln!(
        o,
        "# ferry runbook {} for Windows, rendered by ferry {version}.",
        comment(&rb.name)
    );
    o.push_str(
        "# Read it before running it. Run it elevated on the device (as SYSTEM or an administrator):\n\
         #   powershell.exe -NoProfile -ExecutionPolicy Bypass -File .\\runbook.ps1 -MapFile C:\\ProgramData\\ferry\\map.csv\n\
         # Each step writes its name to $WorkDir\\steps.done when it succeeds; running the script again\n\
         # resumes after the last step that succeeded. Undo material (ACL saves, registry exports) stays in $WorkDir.\n",
    );
    o.push_str("# Steps:\n");
    let body = body(rb);
    for (i, line) in body
        .lines()
        .filter_map(|l| l.strip_prefix("Invoke-Step '"))
        .enumerate()
    {
        let name = line.split('\'').next().unwrap_or_default();
        let _ = writeln!(o, "#   {}. {name}", i + 1);
    }
    o.push_str("#Requires -RunAsAdministrator\n[CmdletBinding()]\nparam(\n");
    o.push_str("    # CSV of source,target SIDs (`ferry translation export --format csv` has them too).\n    [string]$MapFile = 'C:\\ProgramData\\ferry\\map.csv',\n");
    o.push_str("    # Transcript, step record, ACL saves and registry backups.\n    [string]$WorkDir = 'C:\\ProgramData\\ferry\\run'");
    if p.mode != PermissionMode::None {
        o.push_str(",\n    # ferry itself: it translates the saved ACLs.\n    [string]$Ferry = 'C:\\Program Files\\ferry\\ferry.exe'");
    }
    if d.join == JoinKind::EntraId {
        o.push_str(",\n    # The target tenant's bulk enrolment package (Windows Configuration Designer).\n    [string]$ProvisioningPackage = 'C:\\ProgramData\\ferry\\enrolment.ppkg'");
    }
    if d.join == JoinKind::Ad {
        o.push_str(",\n    # The target Active Directory domain.\n    [Parameter(Mandatory)][string]$TargetDomain");
    }
    o.push_str("\n)\n");
    o.push_str(PRELUDE);
    o.push('\n');
    o.push_str(&body);
    o.push_str("Write-Host 'ferry: runbook finished'\nStop-Transcript | Out-Null\n");
    if rb.user_experience.restart_when_done {
        o.push_str("Restart-Computer -Force\n");
    }
    o
}

/// The steps, each an `Invoke-Step` block.
fn body(rb: &Runbook) -> String {
    let mut o = String::with_capacity(8192);
    let d = &rb.device_state;
    let p = &rb.permission_updates;
    let st = &rb.startup;
    let startup = !st.do_not_run_startup;
    o.push_str("Invoke-Step 'prerequisites' {\n");
    o.push_str("    $me = [Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()\n    if (-not $me.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) { throw 'run this script elevated' }\n");
    if p.mode != PermissionMode::None {
        o.push_str("    if (-not (Test-Path -LiteralPath $Ferry)) { throw \"ferry is not at $Ferry (-Ferry)\" }\n");
    }
    if d.join == JoinKind::EntraId {
        o.push_str("    if (-not (Test-Path -LiteralPath $ProvisioningPackage)) { throw \"no provisioning package at $ProvisioningPackage\" }\n");
    }
    if startup && let Some(a) = &st.admin_fallback_account {
        let name = a.strip_prefix(".\\").unwrap_or(a);
        let _ = writeln!(
            o,
            "    # The admin fallback account stays usable should the migration fail.\n    $fallbackName = {}\n    $fallback = Get-LocalUser -Name $fallbackName -ErrorAction SilentlyContinue\n    if (-not $fallback -or -not $fallback.Enabled) {{ throw \"the admin fallback account $fallbackName is missing or disabled\" }}",
            ps_string(name)
        );
    }
    o.push_str("}\n\n");

    if let Some(n) = st.legal_notice.as_ref().filter(|_| startup) {
        let _ = writeln!(
            o,
            "# The notice shown before sign-in while the migration runs.\nInvoke-Step 'legal-notice' {{\n    $key = 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System'\n    Set-ItemProperty -LiteralPath $key -Name legalnoticecaption -Value {}\n    Set-ItemProperty -LiteralPath $key -Name legalnoticetext -Value {}\n}}\n",
            ps_string(&n.title),
            ps_block(&n.text)
        );
    }
    if startup && st.prevent_login {
        o.push_str("# prevent_login: on Windows the ferry agent service holds sign-ins; this script does not.\n\n");
    }
    for (i, s) in st
        .pre_migration_scripts
        .iter()
        .enumerate()
        .filter(|_| startup)
    {
        script_call(&mut o, &format!("pre-script-{}", i + 1), s);
    }

    match d.remove_from {
        JoinKind::None => {}
        JoinKind::EntraId => o.push_str(
            "# Leave the source Entra ID tenant.\nInvoke-Step 'leave' {\n    & dsregcmd.exe /leave\n    if ($LASTEXITCODE -ne 0) { throw \"dsregcmd /leave exited with $LASTEXITCODE\" }\n}\n\n",
        ),
        JoinKind::Ad => o.push_str(
            "# Leave the source Active Directory domain (to a workgroup; the computer account stays).\nInvoke-Step 'leave' {\n    $cs = Get-CimInstance -ClassName Win32_ComputerSystem\n    $r = Invoke-CimMethod -InputObject $cs -MethodName UnjoinDomainOrWorkgroup -Arguments @{ FUnjoinOptions = [uint32]0 }\n    if ($r.ReturnValue -ne 0) { throw \"UnjoinDomainOrWorkgroup returned $($r.ReturnValue)\" }\n}\n\n",
        ),
    }

    if p.mode != PermissionMode::None {
        let mode = if p.mode == PermissionMode::Add {
            "add"
        } else {
            "add-and-remove"
        };
        o.push_str("# Re-permission: each tree's DACLs saved with icacls, translated by ferry (inherited ACEs\n# included, nothing else touched), restored. acl-N.txt is the undo: icacls PARENT /restore acl-N.txt.\n");
        if mode == "add-and-remove" {
            o.push_str("# icacls saves DACLs only, so owners that are source SIDs are set to their targets after.\n");
        }
        o.push_str("Invoke-Step 'repermission' {\n");
        if p.paths.is_empty() {
            o.push_str("    # The runbook names no paths: the profile folders of the mapped users.\n    $paths = @(foreach ($s in $Map.Keys) { $k = Join-Path $ProfileList $s; if (Test-Path -LiteralPath $k) { (Get-ItemProperty -LiteralPath $k).ProfileImagePath } })\n");
        } else {
            let list: Vec<String> = p.paths.iter().map(|x| ps_string(x)).collect();
            let _ = writeln!(o, "    $paths = @({})", list.join(", "));
        }
        let ignore: String = p
            .ignore
            .iter()
            .map(|g| format!(" --ignore {}", ps_string(g)))
            .collect();
        let _ = writeln!(
            o,
            "    $n = 0\n    foreach ($path in $paths) {{\n        $n++\n        $saved = Join-Path $WorkDir \"acl-$n.txt\"\n        $translated = Join-Path $WorkDir \"acl-$n.translated.txt\"\n        $root = $path.TrimEnd('\\') + '\\'\n        & icacls.exe ($root + '*') /save $saved /T /C /Q\n        if ($LASTEXITCODE -ne 0) {{ Write-Warning \"icacls /save $path exited with $LASTEXITCODE (some objects could not be read)\" }}\n        & $Ferry icacls translate --map $MapFile --mode {mode}{ignore} $saved $translated\n        if ($LASTEXITCODE -ne 0) {{ throw \"ferry icacls translate exited with $LASTEXITCODE\" }}\n        & icacls.exe $root /restore $translated /C /Q\n        if ($LASTEXITCODE -ne 0) {{ throw \"icacls /restore $path exited with $LASTEXITCODE\" }}"
        );
        if mode == "add-and-remove" {
            o.push_str("        $items = @(Get-Item -LiteralPath $path -Force) + @(Get-ChildItem -LiteralPath $path -Recurse -Force -Attributes !ReparsePoint -ErrorAction SilentlyContinue)\n        foreach ($item in $items) {\n            $owner = (Get-Acl -LiteralPath $item.FullName).GetOwner([Security.Principal.SecurityIdentifier]).Value\n            if ($Map.Contains($owner)) {\n                & icacls.exe $item.FullName /setowner ('*' + $Map[$owner]) /C /L /Q | Out-Null\n                if ($LASTEXITCODE -ne 0) { Write-Warning \"owner of $($item.FullName) not set\" }\n            }\n        }\n");
        }
        o.push_str("    }\n}\n\n");

        o.push_str(
            "# Profile re-association: each mapped user's profile key is copied to the target SID's key,\n# pointing at the same folder; the old key is exported to ProfileList-<SID>.reg and renamed\n# <SID>.ferry-bak (undo: delete the target key, rename the .ferry-bak key back).\nInvoke-Step 'profile-reassociation' {\n    foreach ($source in @($Map.Keys)) {\n        $target = $Map[$source]\n        $old = Join-Path $ProfileList $source\n        if (-not (Test-Path -LiteralPath $old)) { continue }\n        $folder = (Get-ItemProperty -LiteralPath $old).ProfileImagePath\n        & reg.exe export \"HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\ProfileList\\$source\" (Join-Path $WorkDir \"ProfileList-$source.reg\") /y | Out-Null\n        if ($LASTEXITCODE -ne 0) { throw \"could not back up the profile key of $source\" }\n        $new = Join-Path $ProfileList $target\n        if (Test-Path -LiteralPath $new) {\n            & reg.exe export \"HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\ProfileList\\$target\" (Join-Path $WorkDir \"ProfileList-$target.reg\") /y | Out-Null\n            Remove-Item -LiteralPath $new -Recurse -Force\n        }\n        Copy-Item -LiteralPath $old -Destination $new -Recurse\n        $sid = New-Object Security.Principal.SecurityIdentifier $target\n        $bytes = New-Object byte[] $sid.BinaryLength\n        $sid.GetBinaryForm($bytes, 0)\n        Set-ItemProperty -LiteralPath $new -Name Sid -Value $bytes -Type Binary\n        Rename-Item -LiteralPath $old -NewName \"$source.ferry-bak\"\n        Write-Host \"  $target now signs in to $folder (was $source)\"\n    }\n}\n\n",
        );
    }

    match d.join {
        JoinKind::None => {}
        JoinKind::EntraId => o.push_str(
            "# Join the target Entra ID tenant with its bulk enrolment package.\nInvoke-Step 'join' {\n    Install-ProvisioningPackage -PackagePath $ProvisioningPackage -ForceInstall -QuietInstall | Out-Null\n}\n\n",
        ),
        JoinKind::Ad => o.push_str(
            "# Join the target Active Directory domain (asks for an account allowed to join).\nInvoke-Step 'join' {\n    Add-Computer -DomainName $TargetDomain -Credential (Get-Credential -Message \"Join $TargetDomain\") -Force\n}\n\n",
        ),
    }
    if d.enrol_in_intune {
        o.push_str(
            "# Enrol in the target's Intune (MDM auto-enrolment of the joined device).\nInvoke-Step 'intune-enrolment' {\n    & \"$env:windir\\System32\\deviceenroller.exe\" /c /AutoEnrollMDM\n    if ($LASTEXITCODE -ne 0) { throw \"deviceenroller.exe exited with $LASTEXITCODE\" }\n}\n\n",
        );
    }
    let a = &rb.app_reconfiguration;
    if a.onedrive_cloud_only {
        o.push_str(
            "# OneDrive files made cloud-only (attrib +U -P: online-only, no local copy), every profile.\nInvoke-Step 'onedrive-cloud-only' {\n    foreach ($profile in Get-CimInstance -ClassName Win32_UserProfile | Where-Object { -not $_.Special }) {\n        foreach ($od in Get-ChildItem -LiteralPath $profile.LocalPath -Directory -Filter 'OneDrive*' -Force -ErrorAction SilentlyContinue) {\n            & attrib.exe +U -P (Join-Path $od.FullName '*') /S /D\n            if ($LASTEXITCODE -ne 0) { Write-Warning \"attrib on $($od.FullName) exited with $LASTEXITCODE\" }\n        }\n    }\n}\n\n",
        );
    }
    if a.reconfigure_applications {
        for (i, s) in a.commands.iter().enumerate() {
            script_call(&mut o, &format!("app-{}", i + 1), s);
        }
    }
    if !rb.completion.do_not_run_completion {
        for (i, s) in rb.completion.post_migration_scripts.iter().enumerate() {
            script_call(&mut o, &format!("post-script-{}", i + 1), s);
        }
    }
    if startup && st.legal_notice.is_some() {
        o.push_str("Invoke-Step 'clear-legal-notice' {\n    $key = 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System'\n    Set-ItemProperty -LiteralPath $key -Name legalnoticecaption -Value ''\n    Set-ItemProperty -LiteralPath $key -Name legalnoticetext -Value ''\n}\n\n");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_literals() {
        assert_eq!(ps_string("it's"), "'it''s'");
        assert_eq!(ps_string("‘x’"), "'‘‘x’’'");
        assert_eq!(ps_string("$(rm)`"), "'$(rm)`'");
        assert_eq!(
            ps_string("a\nb"),
            "[Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('YQpi'))"
        );
        assert_eq!(base64(b"ferry"), "ZmVycnk=");
        assert_eq!(ps_block("echo hi\n"), "@'\necho hi\n'@");
        assert!(ps_block("x\n'@\nevil").starts_with("[Text"));
        assert!(ps_block("x\n’@\nevil").starts_with("[Text"));
        assert_eq!(comment("a\nb\r"), "a b ");
    }
}
