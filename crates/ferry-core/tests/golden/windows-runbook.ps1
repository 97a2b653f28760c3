# ferry runbook Finance laptops for Windows, rendered by ferry TEST.
# Read it before running it. Run it elevated on the device (as SYSTEM or an administrator):
#   powershell.exe -NoProfile -ExecutionPolicy Bypass -File .\runbook.ps1 -MapFile C:\ProgramData\ferry\map.csv
# Each step writes its name to $WorkDir\steps.done when it succeeds; running the script again
# resumes after the last step that succeeded. Undo material (ACL saves, registry exports) stays in $WorkDir.
# Steps:
#   1. prerequisites
#   2. legal-notice
#   3. pre-script-1
#   4. leave
#   5. repermission
#   6. profile-reassociation
#   7. join
#   8. intune-enrolment
#   9. onedrive-cloud-only
#   10. post-script-1
#   11. clear-legal-notice
#Requires -RunAsAdministrator
[CmdletBinding()]
param(
    # CSV of source,target SIDs (`ferry translation export --format csv` has them too).
    [string]$MapFile = 'C:\ProgramData\ferry\map.csv',
    # Transcript, step record, ACL saves and registry backups.
    [string]$WorkDir = 'C:\ProgramData\ferry\run',
    # ferry itself: it translates the saved ACLs.
    [string]$Ferry = 'C:\Program Files\ferry\ferry.exe',
    # The target tenant's bulk enrolment package (Windows Configuration Designer).
    [string]$ProvisioningPackage = 'C:\ProgramData\ferry\enrolment.ppkg'
)
$ErrorActionPreference = 'Stop'
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

Invoke-Step 'prerequisites' {
    $me = [Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()
    if (-not $me.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) { throw 'run this script elevated' }
    if (-not (Test-Path -LiteralPath $Ferry)) { throw "ferry is not at $Ferry (-Ferry)" }
    if (-not (Test-Path -LiteralPath $ProvisioningPackage)) { throw "no provisioning package at $ProvisioningPackage" }
    # The admin fallback account stays usable should the migration fail.
    $fallbackName = 'ferry-fallback'
    $fallback = Get-LocalUser -Name $fallbackName -ErrorAction SilentlyContinue
    if (-not $fallback -or -not $fallback.Enabled) { throw "the admin fallback account $fallbackName is missing or disabled" }
}

# The notice shown before sign-in while the migration runs.
Invoke-Step 'legal-notice' {
    $key = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System'
    Set-ItemProperty -LiteralPath $key -Name legalnoticecaption -Value 'Migration in progress'
    Set-ItemProperty -LiteralPath $key -Name legalnoticetext -Value @'
Your PC is moving to Fabrikam.
Please do not sign in.
'@
}

# prevent_login: on Windows the ferry agent service holds sign-ins; this script does not.

# pre-script-1: stop sync clients (powershell), at most 120 s
Invoke-Step 'pre-script-1' {
    Invoke-RunbookScript -Name 'stop sync clients' -Interpreter 'powershell' -TimeoutSeconds 120 -Required $true -Body @'
Get-Process OneDrive -ErrorAction SilentlyContinue | Stop-Process -Force
'@
}

# Leave the source Entra ID tenant.
Invoke-Step 'leave' {
    & dsregcmd.exe /leave
    if ($LASTEXITCODE -ne 0) { throw "dsregcmd /leave exited with $LASTEXITCODE" }
}

# Re-permission: each tree's DACLs saved with icacls, translated by ferry (inherited ACEs
# included, nothing else touched), restored. acl-N.txt is the undo: icacls PARENT /restore acl-N.txt.
# icacls saves DACLs only, so owners that are source SIDs are set to their targets after.
Invoke-Step 'repermission' {
    $paths = @('C:\Users', 'D:\Data')
    $n = 0
    foreach ($path in $paths) {
        $n++
        $saved = Join-Path $WorkDir "acl-$n.txt"
        $translated = Join-Path $WorkDir "acl-$n.translated.txt"
        $root = $path.TrimEnd('\') + '\'
        & icacls.exe ($root + '*') /save $saved /T /C /Q
        if ($LASTEXITCODE -ne 0) { Write-Warning "icacls /save $path exited with $LASTEXITCODE (some objects could not be read)" }
        & $Ferry icacls translate --map $MapFile --mode add-and-remove --ignore '**\AppData\Local\Temp' $saved $translated
        if ($LASTEXITCODE -ne 0) { throw "ferry icacls translate exited with $LASTEXITCODE" }
        & icacls.exe $root /restore $translated /C /Q
        if ($LASTEXITCODE -ne 0) { throw "icacls /restore $path exited with $LASTEXITCODE" }
        $items = @(Get-Item -LiteralPath $path -Force) + @(Get-ChildItem -LiteralPath $path -Recurse -Force -Attributes !ReparsePoint -ErrorAction SilentlyContinue)
        foreach ($item in $items) {
            $owner = (Get-Acl -LiteralPath $item.FullName).GetOwner([Security.Principal.SecurityIdentifier]).Value
            if ($Map.Contains($owner)) {
                & icacls.exe $item.FullName /setowner ('*' + $Map[$owner]) /C /L /Q | Out-Null
                if ($LASTEXITCODE -ne 0) { Write-Warning "owner of $($item.FullName) not set" }
            }
        }
    }
}

# Profile re-association: each mapped user's profile key is copied to the target SID's key,
# pointing at the same folder; the old key is exported to ProfileList-<SID>.reg and renamed
# <SID>.ferry-bak (undo: delete the target key, rename the .ferry-bak key back).
Invoke-Step 'profile-reassociation' {
    foreach ($source in @($Map.Keys)) {
        $target = $Map[$source]
        $old = Join-Path $ProfileList $source
        if (-not (Test-Path -LiteralPath $old)) { continue }
        $folder = (Get-ItemProperty -LiteralPath $old).ProfileImagePath
        & reg.exe export "HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList\$source" (Join-Path $WorkDir "ProfileList-$source.reg") /y | Out-Null
        if ($LASTEXITCODE -ne 0) { throw "could not back up the profile key of $source" }
        $new = Join-Path $ProfileList $target
        if (Test-Path -LiteralPath $new) {
            & reg.exe export "HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList\$target" (Join-Path $WorkDir "ProfileList-$target.reg") /y | Out-Null
            Remove-Item -LiteralPath $new -Recurse -Force
        }
        Copy-Item -LiteralPath $old -Destination $new -Recurse
        $sid = New-Object Security.Principal.SecurityIdentifier $target
        $bytes = New-Object byte[] $sid.BinaryLength
        $sid.GetBinaryForm($bytes, 0)
        Set-ItemProperty -LiteralPath $new -Name Sid -Value $bytes -Type Binary
        Rename-Item -LiteralPath $old -NewName "$source.ferry-bak"
        Write-Host "  $target now signs in to $folder (was $source)"
    }
}

# Join the target Entra ID tenant with its bulk enrolment package.
Invoke-Step 'join' {
    Install-ProvisioningPackage -PackagePath $ProvisioningPackage -ForceInstall -QuietInstall | Out-Null
}

# Enrol in the target's Intune (MDM auto-enrolment of the joined device).
Invoke-Step 'intune-enrolment' {
    & "$env:windir\System32\deviceenroller.exe" /c /AutoEnrollMDM
    if ($LASTEXITCODE -ne 0) { throw "deviceenroller.exe exited with $LASTEXITCODE" }
}

# OneDrive files made cloud-only (attrib +U -P: online-only, no local copy), every profile.
Invoke-Step 'onedrive-cloud-only' {
    foreach ($profile in Get-CimInstance -ClassName Win32_UserProfile | Where-Object { -not $_.Special }) {
        foreach ($od in Get-ChildItem -LiteralPath $profile.LocalPath -Directory -Filter 'OneDrive*' -Force -ErrorAction SilentlyContinue) {
            & attrib.exe +U -P (Join-Path $od.FullName '*') /S /D
            if ($LASTEXITCODE -ne 0) { Write-Warning "attrib on $($od.FullName) exited with $LASTEXITCODE" }
        }
    }
}

# post-script-1: report (cmd), at most 600 s, not required
Invoke-Step 'post-script-1' {
    Invoke-RunbookScript -Name 'report' -Interpreter 'cmd' -TimeoutSeconds 600 -Required $false -Body @'
echo migrated >> C:\ProgramData\ferry\done.txt
'@
}

Invoke-Step 'clear-legal-notice' {
    $key = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System'
    Set-ItemProperty -LiteralPath $key -Name legalnoticecaption -Value ''
    Set-ItemProperty -LiteralPath $key -Name legalnoticetext -Value ''
}

Write-Host 'ferry: runbook finished'
Stop-Transcript | Out-Null
Restart-Computer -Force
