//! Deployed code: a set of ES modules by path, and how their relative imports resolve.

use std::collections::BTreeMap;
use std::sync::Arc;

/// One deployed version of a project's function code: the modules the Convex CLI uploaded, by
/// path relative to the functions directory (`messages.js`, `dir/file.js`, `_deps/7FY3PNDB.js`).
///
/// `version` identifies the content: two `ModuleSet`s with the same version must hold the same
/// modules, because each pool thread caches evaluated modules by version (and environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSet {
    pub version: u64,
    pub modules: BTreeMap<String, Arc<str>>,
}

impl ModuleSet {
    /// The source of the module at `path`, if the set has it.
    pub fn source(&self, path: &str) -> Option<&Arc<str>> {
        self.modules.get(path)
    }

    /// Entry modules: every module that is not a shared chunk under `_deps/`. These are the
    /// modules whose exports are functions.
    pub fn entry_modules(&self) -> impl Iterator<Item = &str> {
        self.modules
            .keys()
            .map(String::as_str)
            .filter(|path| !path.starts_with("_deps/"))
    }
}

/// Resolves an import specifier found in module `base` to a module path, the way URL resolution
/// of `convex:/<base>` would: `./x.js` and `../x.js` are relative to `base`'s directory, `/x.js`
/// is from the root, and `..` never climbs above the root. An empty `base` means the import
/// comes from the runtime itself (an entry module being loaded), where a bare path is taken
/// from the root. A bare specifier inside a module (`import "react"`) cannot name an uploaded
/// module, so it is refused. The error is the reason alone.
pub fn resolve_specifier(base: &str, specifier: &str) -> Result<String, String> {
    let (directory, relative): (Vec<&str>, &str) = if let Some(rest) = specifier.strip_prefix('/') {
        (Vec::new(), rest)
    } else if specifier.starts_with("./") || specifier.starts_with("../") {
        let mut directory: Vec<&str> = base.split('/').collect();
        // The last segment of the base is its file name.
        directory.pop();
        (directory, specifier)
    } else if base.is_empty() {
        (Vec::new(), specifier)
    } else {
        return Err(
            "only relative imports of uploaded modules are supported (the bundler \
                    should have inlined packages)"
                .to_string(),
        );
    };
    let mut segments = directory;
    for segment in relative.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    if segments.is_empty() {
        return Err("the specifier names no module".to_string());
    }
    Ok(segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::resolve_specifier;

    #[test]
    fn relative_imports_resolve_like_urls() {
        assert_eq!(
            resolve_specifier("messages.js", "./_deps/ABC.js").as_deref(),
            Ok("_deps/ABC.js")
        );
        assert_eq!(
            resolve_specifier("dir/file.js", "../_deps/ABC.js").as_deref(),
            Ok("_deps/ABC.js")
        );
        assert_eq!(
            resolve_specifier("dir/sub/file.js", "./other.js").as_deref(),
            Ok("dir/sub/other.js")
        );
        assert_eq!(
            resolve_specifier("dir/file.js", "../../../x.js").as_deref(),
            Ok("x.js")
        );
        assert_eq!(
            resolve_specifier("dir/file.js", "/x.js").as_deref(),
            Ok("x.js")
        );
        assert_eq!(
            resolve_specifier("_deps/A.js", "./B.js").as_deref(),
            Ok("_deps/B.js")
        );
        assert_eq!(
            resolve_specifier("", "dir/file.js").as_deref(),
            Ok("dir/file.js")
        );
    }

    #[test]
    fn bare_and_empty_specifiers_are_refused() {
        assert!(resolve_specifier("messages.js", "react").is_err());
        assert!(resolve_specifier("messages.js", "./").is_err());
    }
}
