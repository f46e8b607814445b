//! The test app's modules as the real Convex CLI bundles them, for the Rust tests of any crate
//! (`crates/js/tests/real_bundles.rs`, `crates/functions/tests/convex_project/mod.rs` include
//! this file with `#[path]`). One copy, so every suite shares one bundle: the output directory,
//! lock and input stamp live under `CARGO_TARGET_TMPDIR`, which the whole workspace shares, and
//! bundling happens at most once per change of the project's files.
//!
//! Needs Node.js 20+ and npm: the first run installs the pinned CLI with `npm ci` and bundles
//! with `bundle.sh`; a missing `node` or `npm` fails the calling test.

use std::collections::BTreeMap;
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use js::ModuleSet;

pub fn project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/convex-project")
}

/// The CLI's modules for the project, bundled at most once per change of the project's files.
pub fn bundle() -> Arc<ModuleSet> {
    static BUNDLE: OnceLock<Arc<ModuleSet>> = OnceLock::new();
    BUNDLE.get_or_init(build_bundle).clone()
}

fn build_bundle() -> Arc<ModuleSet> {
    for tool in ["node", "npm"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        assert!(
            found,
            "`{tool}` is not available: the real-bundle tests need Node.js 20+ and npm to run the \
             Convex CLI (install them, e.g. `apt-get install -y nodejs npm`; CI's .ci/run does)"
        );
    }
    let project = project_dir();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = tmp.join("convex-project-bundle");
    let stamp_path = tmp.join("convex-project-bundle.stamp");
    let lock_path = tmp.join("convex-project-bundle.lock");
    if let Err(e) = std::fs::create_dir_all(tmp) {
        panic!("cannot create {}: {e}", tmp.display());
    }
    // Test processes (nextest runs one per test) bundle one at a time; the others wait and
    // reuse the result.
    let lock = match File::create(&lock_path) {
        Ok(file) => file,
        Err(e) => panic!("cannot create {}: {e}", lock_path.display()),
    };
    if let Err(e) = lock.lock() {
        panic!("cannot lock {}: {e}", lock_path.display());
    }
    let stamp = input_stamp(&project).to_string();
    let config_path = out.join("fullConfig.json");
    let fresh = std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp);
    if !fresh || !config_path.exists() {
        let _ = std::fs::remove_file(&stamp_path);
        let script = project.join("bundle.sh");
        let output = match Command::new("bash").arg(&script).arg(&out).output() {
            Ok(output) => output,
            Err(e) => panic!("cannot run {}: {e}", script.display()),
        };
        assert!(
            output.status.success(),
            "{} {} failed ({}):\n{}{}",
            script.display(),
            out.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        if let Err(e) = std::fs::write(&stamp_path, &stamp) {
            panic!("cannot write {}: {e}", stamp_path.display());
        }
    }
    let text = match std::fs::read_to_string(&config_path) {
        Ok(text) => text,
        Err(e) => panic!("cannot read {}: {e}", config_path.display()),
    };
    drop(lock);
    let config: serde_json::Value = match serde_json::from_str(&text) {
        Ok(config) => config,
        Err(e) => panic!("{} is not JSON: {e}", config_path.display()),
    };
    let mut modules = BTreeMap::new();
    for module in config["modules"].as_array().into_iter().flatten() {
        let (Some(path), Some(source)) = (module["path"].as_str(), module["source"].as_str())
        else {
            panic!("module without path or source in fullConfig.json: {module}");
        };
        assert_eq!(
            module["environment"], "isolate",
            "{path} is not for the default runtime"
        );
        modules.insert(path.to_string(), Arc::<str>::from(source));
    }
    Arc::new(ModuleSet {
        version: stamp.parse().unwrap_or(1),
        modules,
    })
}

/// A hash of every file the bundle depends on: the functions, the package files, the script.
/// `node_modules/` is `npm ci`'s function of the lockfile, and `convex/_generated/` the CLI's
/// own output; the differential reference (`reference/`) does not affect the bundle.
fn input_stamp(project: &Path) -> u64 {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if entry.file_name() != "_generated" {
                    walk(&path, files);
                }
            } else {
                files.push(path);
            }
        }
    }
    let mut files: Vec<PathBuf> = ["package.json", "package-lock.json", ".npmrc", "bundle.sh"]
        .iter()
        .map(|name| project.join(name))
        .collect();
    walk(&project.join("convex"), &mut files);
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.strip_prefix(project)
            .unwrap_or(&file)
            .hash(&mut hasher);
        match std::fs::read(&file) {
            Ok(bytes) => bytes.hash(&mut hasher),
            Err(e) => panic!("cannot read {}: {e}", file.display()),
        }
    }
    hasher.finish()
}
