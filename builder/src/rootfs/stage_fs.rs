//! The filesystems of the stages a layer reads: the stages it copies out of (`from-stage`
//! entries) and its own base (whose directories lend their mode and owner to the directories a
//! layer only implies).
//!
//! A [`StageFs`] belongs to one stage of a build. The executor tells it the layer blobs of each
//! stage it may read ([`StageFs::provide`]) once that stage is built; the first layer that
//! reads a stage opens its [`Rootfs`] (in a scratch directory of the store, removed when the
//! `StageFs` is dropped) and every later layer of the stage reuses it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{CopyRequest, LayerBlobRef, Rootfs};
use crate::layer::{self, LayerTree};
use crate::oci;
use crate::spec::EntrySpec;

/// The name under which a stage's own base is provided (not a valid stage name, so it never
/// meets one).
pub const BASE_FS: &str = "/base";

/// The stage filesystems one stage's layers read, opened once each, on first use.
#[derive(Debug)]
pub struct StageFs {
    layers: Mutex<HashMap<String, Vec<LayerBlobRef>>>,
    store_root: Option<PathBuf>,
    opened: Mutex<HashMap<String, Arc<Rootfs>>>,
    scratch: Mutex<Vec<oci::TempDirBeside>>,
}

/// Locks a mutex, taking over a poisoned one (its maps stay consistent: every update is one
/// insert).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StageFs {
    /// A view with no stage yet; scratch directories go into `store_root` (else the system's
    /// temporary directory).
    pub fn new(store_root: Option<&Path>) -> Self {
        StageFs {
            layers: Mutex::new(HashMap::new()),
            store_root: store_root.map(Path::to_path_buf),
            opened: Mutex::new(HashMap::new()),
            scratch: Mutex::new(Vec::new()),
        }
    }

    /// Makes the stage `name` readable: its layer blobs, bottom first. The first call for a
    /// name wins (a stage is built once per build).
    pub fn provide(&self, name: &str, layers: impl FnOnce() -> Vec<LayerBlobRef>) {
        lock(&self.layers)
            .entry(name.to_string())
            .or_insert_with(layers);
    }

    /// The merged filesystem of stage `stage`, opened on first use.
    pub fn rootfs(&self, stage: &str) -> Result<Arc<Rootfs>, layer::Error> {
        let fail = |e: Box<dyn std::error::Error + Send + Sync>| layer::Error::CopyFromStage {
            stage: stage.to_string(),
            path: "/".to_string(),
            source: e,
        };
        let mut opened = lock(&self.opened);
        if let Some(fs) = opened.get(stage) {
            return Ok(fs.clone());
        }
        let layers = lock(&self.layers)
            .get(stage)
            .cloned()
            .ok_or_else(|| fail("the stage is not built in this build".into()))?;
        let parent = self.store_root.clone().unwrap_or_else(std::env::temp_dir);
        let scratch =
            oci::scratch_dir(&parent, oci::Scratch::Stage).map_err(|e| fail(Box::new(e)))?;
        let fs = Rootfs::open(stage, &layers, scratch.path()).map_err(|e| fail(Box::new(e)))?;
        let fs = Arc::new(fs);
        opened.insert(stage.to_string(), fs.clone());
        lock(&self.scratch).push(scratch);
        Ok(fs)
    }
}

impl layer::StageCopier for StageFs {
    fn copy_out(
        &self,
        layer_name: &str,
        stage: &str,
        path: &str,
        include: &[String],
        exclude: &[String],
        entry: &EntrySpec,
        index: usize,
        tree: &mut LayerTree,
    ) -> Result<(), layer::Error> {
        let fs = self.rootfs(stage)?;
        let src = format!("/{path}");
        let request = CopyRequest {
            src: &src,
            include,
            exclude,
            dest: &entry.dest,
            dest_is_dir: entry.dest_is_dir,
            // As Docker's `COPY --from`: owned by 0:0 unless the entry says otherwise.
            owner: Some(entry.owner),
            mode: entry.mode,
            dir_mode: entry.dir_mode,
            layer: layer_name,
            origin: index,
        };
        fs.copy_out(&request, tree)
            .map_err(|e| layer::Error::CopyFromStage {
                stage: stage.to_string(),
                path: format!("/{path}"),
                source: Box::new(e),
            })
    }
}
