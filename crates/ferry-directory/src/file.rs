//! `kind = "file"`: a JSON or CSV snapshot on disk.
//!
//! Imports are always full (a snapshot has no change log). Exports rewrite the snapshot atomically
//! (a temporary file in the same folder, then a rename), so a crash leaves the old file or the new
//! one, never half of one. Created objects get a new GUID and, like Entra objects, the SID derived
//! from it.

use crate::*;
use ferry_core::config::{FileDirectory, FileFormat};
use ferry_core::model::AttrRef;
use ferry_core::sid::entra_sid_from_object_id;
use ferry_core::snapshot;
use rustc_hash::FxHashMap;

#[derive(Clone)]
pub struct FileConnector {
    path: PathBuf,
    format: FileFormat,
}

/// Runs file work off the async threads.
async fn off_thread<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, DirectoryError> + Send + 'static,
) -> Result<R, DirectoryError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(DirectoryError::FileRead {
            path: PathBuf::new(),
            detail: e.to_string(),
        })
    })
}

impl FileConnector {
    pub fn new(cfg: &FileDirectory, base: &Path) -> FileConnector {
        FileConnector {
            path: base.join(&cfg.path),
            format: cfg.format(),
        }
    }

    fn read(&self) -> Result<Vec<DirObject>, DirectoryError> {
        let err = |e: std::io::Error| DirectoryError::FileRead {
            path: self.path.clone(),
            detail: e.to_string(),
        };
        let bad = |e: snapshot::SnapshotError| DirectoryError::Snapshot {
            path: self.path.clone(),
            detail: e.to_string(),
        };
        match self.format {
            FileFormat::Json => {
                // Streamed, so a large snapshot is never held whole; a malformed one is read again
                // whole to say exactly where it is wrong.
                let f = std::fs::File::open(&self.path).map_err(err)?;
                match snapshot::parse_json_reader(std::io::BufReader::with_capacity(1 << 20, f)) {
                    Ok(objs) => Ok(objs),
                    Err(first) => {
                        let bytes = std::fs::read(&self.path).map_err(err)?;
                        Err(bad(snapshot::parse_json(&bytes).err().unwrap_or(first)))
                    }
                }
            }
            FileFormat::Csv => {
                let bytes = std::fs::read(&self.path).map_err(err)?;
                snapshot::parse_csv(&bytes).map_err(bad)
            }
        }
    }

    fn write(&self, objs: &[DirObject]) -> Result<(), DirectoryError> {
        let body = match self.format {
            FileFormat::Json => snapshot::render_json(objs),
            FileFormat::Csv => snapshot::render_csv(objs),
        };
        let err = |e: std::io::Error| DirectoryError::FileWrite {
            path: self.path.clone(),
            detail: e.to_string(),
        };
        let tmp = self
            .path
            .with_extension(format!("tmp-{}", std::process::id()));
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp).map_err(err)?;
            f.write_all(&body).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(err)
    }
}

/// Sets a ferry-named or raw attribute on an object.
fn set_attr(o: &mut DirObject, name: &str, values: &[String]) {
    let first = values.first().cloned();
    match AttrRef::parse(name) {
        AttrRef::Id => {}
        AttrRef::Dn => o.dn = first,
        AttrRef::Name => o.name = first.unwrap_or_default(),
        AttrRef::Upn => o.upn = first,
        AttrRef::Mail => o.mail = first,
        AttrRef::Sid => o.sid = first,
        AttrRef::UidNumber => o.uid_number = first.and_then(|v| v.parse().ok()),
        AttrRef::GidNumber => o.gid_number = first.and_then(|v| v.parse().ok()),
        AttrRef::Other(n) => {
            o.attrs.retain(|(k, _)| !k.eq_ignore_ascii_case(&n));
            o.attrs
                .extend(values.iter().map(|v| (n.clone(), v.clone())));
        }
    }
}

#[async_trait]
impl Connector for FileConnector {
    async fn import(
        &self,
        kinds: &[ObjectKind],
        _since: Option<&str>,
    ) -> Result<Imported, DirectoryError> {
        let me = self.clone();
        let mut objects = off_thread(move || me.read()).await?;
        objects.retain(|o| kinds.contains(&o.kind));
        crate::progress::add(objects.len());
        Ok(Imported {
            removed: Vec::new(),
            objects,
            full: true,
            watermark: None,
            logs: vec![],
        })
    }

    async fn export(
        &self,
        writes: &[Write],
        _targets: &[DirObject],
    ) -> Result<ExportReport, DirectoryError> {
        let me = self.clone();
        let writes = writes.to_vec();
        off_thread(move || {
            let mut objs = me.read()?;
            let mut index: FxHashMap<(ObjectKind, String), usize> = objs
                .iter()
                .enumerate()
                .map(|(i, o)| ((o.kind, o.id.clone()), i))
                .collect();
            let mut report = ExportReport::default();
            for w in &writes {
                match w {
                    Write::Create {
                        kind,
                        source_id,
                        name,
                        attributes,
                        members,
                    } => {
                        let id = new_guid();
                        let mut o = DirObject::new(*kind, id.clone(), name.clone());
                        for (k, v) in attributes {
                            set_attr(&mut o, k, v);
                        }
                        if o.sid.is_none() {
                            o.sid = entra_sid_from_object_id(&id).ok();
                        }
                        o.members = members.clone();
                        o.normalise();
                        report.logs.push(
                            LogEntry::info(
                                "created",
                                format!("created {kind} {} (from source {source_id})", o.name),
                            )
                            .with_object(&o),
                        );
                        index.insert((*kind, id), objs.len());
                        objs.push(o);
                        report.applied += 1;
                    }
                    Write::Update {
                        kind,
                        source_id,
                        target_id,
                        changes,
                        ..
                    } => match index.get(&(*kind, target_id.clone())) {
                        Some(&i) => {
                            for c in changes {
                                if c.attribute == "members" {
                                    objs[i].members = c.new.clone();
                                } else {
                                    set_attr(&mut objs[i], &c.attribute, &c.new);
                                }
                            }
                            objs[i].normalise();
                            report.applied += 1;
                        }
                        None => report.failed.push((
                            source_id.clone(),
                            format!("target {kind} {target_id} no longer exists"),
                        )),
                    },
                }
            }
            me.write(&objs)?;
            Ok(report)
        })
        .await
    }

    async fn test(&self) -> Result<TestReport, DirectoryError> {
        let me = self.clone();
        let objs = off_thread(move || me.read()).await?;
        let counts = ObjectKind::ALL
            .iter()
            .map(|&k| (k, objs.iter().filter(|o| o.kind == k).count() as u64))
            .collect();
        Ok(TestReport {
            ok: true,
            checks: vec![format!(
                "read {} ({} objects)",
                self.path.display(),
                objs.len()
            )],
            counts,
        })
    }

    fn supports_delta(&self) -> bool {
        false
    }
}
