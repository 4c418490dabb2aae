//! Workspace members and their package names, read from the `Cargo.toml` files by hand.
//!
//! This is a small line-based reader, not a TOML parser, which keeps xtask free of
//! dependencies (the alternative, `cargo metadata`, prints JSON that would want one).
//! It understands the manifests this repository writes (plain member paths, one table
//! header per line, no escapes in the strings it reads) and reports anything else as an
//! error rather than guessing.

use std::{fs, path::Path};

use crate::TaskError;

/// The package names of the workspace members under `root` that have a library target,
/// in the order the root manifest lists them.
pub(crate) fn libraries(root: &Path) -> Result<Vec<String>, TaskError> {
    let root_manifest = root.join("Cargo.toml");
    let members =
        workspace_members(&read(&root_manifest)?).map_err(|problem| TaskError::Manifest {
            path: root_manifest,
            problem,
        })?;
    let mut libraries = Vec::new();
    for member in members {
        let dir = root.join(&member);
        let manifest_path = dir.join("Cargo.toml");
        let manifest = read(&manifest_path)?;
        let name = package_name(&manifest).ok_or_else(|| TaskError::Manifest {
            path: manifest_path,
            problem: "no `name = \"...\"` in its [package] table".to_owned(),
        })?;
        let is_library = has_table(&manifest, "lib") || dir.join("src/lib.rs").is_file();
        if is_library {
            libraries.push(name);
        }
    }
    Ok(libraries)
}

/// The contents of the file at `path`.
fn read(path: &Path) -> Result<String, TaskError> {
    fs::read_to_string(path).map_err(|source| TaskError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The paths in the `members` array of the `[workspace]` table of a root manifest.
///
/// The array may span lines and carry comments and a trailing comma. Glob patterns are
/// rejected: expanding them is more than this reader should do, and a silently missed
/// member would go untested.
fn workspace_members(manifest: &str) -> Result<Vec<String>, String> {
    let mut array = String::new();
    let mut in_array = false;
    for line in table_lines(manifest, "workspace") {
        let line = strip_comment(line);
        let rest = if in_array {
            line
        } else if let Some(value) = key_value(line, "members") {
            let Some(opened) = value.strip_prefix('[') else {
                return Err("`members` in [workspace] is not an array".to_owned());
            };
            in_array = true;
            opened
        } else {
            continue;
        };
        if let Some(end) = rest.find(']') {
            array.push_str(&rest[..end]);
            return parse_string_list(&array);
        }
        array.push_str(rest);
        array.push('\n');
    }
    if in_array {
        Err("the `members` array in [workspace] is not closed".to_owned())
    } else {
        Err("no `members` array in a [workspace] table".to_owned())
    }
}

/// The strings of a comma-separated list of quoted TOML strings (the inside of an array).
fn parse_string_list(list: &str) -> Result<Vec<String>, String> {
    let mut items = Vec::new();
    for item in list.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let path = unquote(item).ok_or_else(|| format!("`{item}` in `members` is not a string"))?;
        if path.contains(['*', '?', '[']) {
            return Err(format!(
                "glob pattern `{path}` in `members` is not supported; list the crates one by one"
            ));
        }
        items.push(path.to_owned());
    }
    Ok(items)
}

/// The package name from the `[package]` table of a member manifest.
fn package_name(manifest: &str) -> Option<String> {
    table_lines(manifest, "package")
        .find_map(|line| key_value(strip_comment(line), "name"))
        .and_then(unquote)
        .map(str::to_owned)
}

/// Whether the manifest has a `[name]` table header.
fn has_table(manifest: &str, name: &str) -> bool {
    manifest
        .lines()
        .any(|line| table_header(line) == Some(name))
}

/// The lines of the table `[name]`: those after its header up to the next table header.
fn table_lines<'a>(manifest: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    manifest
        .lines()
        .skip_while(move |line| table_header(line) != Some(name))
        .skip(1)
        .take_while(|line| table_header(line).is_none())
}

/// The table name if `line` is a table header such as `[workspace]` or `[[bin]]`.
///
/// Array lines never start with `[` in the manifests we read: values follow a key.
fn table_header(line: &str) -> Option<&str> {
    let line = strip_comment(line).trim();
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(inner);
    Some(inner.trim())
}

/// The value text after `key =` on `line`, if the line assigns `key`.
fn key_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.trim().strip_prefix(key)?.trim_start();
    Some(rest.strip_prefix('=')?.trim())
}

/// The line without a trailing `#` comment; a `#` inside a quoted string is kept.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    for (index, char) in line.char_indices() {
        match (quote, char) {
            (None, '"' | '\'') => quote = Some(char),
            (Some(open), _) if char == open => quote = None,
            (None, '#') => return &line[..index],
            _ => {}
        }
    }
    line
}

/// The contents of a basic (`"..."`) or literal (`'...'`) TOML string without escapes.
fn unquote(value: &str) -> Option<&str> {
    let value = value.trim();
    ['"', '\''].into_iter().find_map(|quote| {
        value
            .strip_prefix(quote)?
            .strip_suffix(quote)
            .filter(|inner| !inner.contains(quote) && !inner.contains('\\'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo_root;

    /// The root manifest of this repository, as it looked when the workspace was laid out.
    const ROOT_MANIFEST: &str = r#"
[workspace]
resolver = "3"
members = ["core", "codec", "transport", "gateway", "monitor", "plexus", "xtask"]

[workspace.package]
version = "0.1.0"

[workspace.dependencies]
plexus-core = { path = "core", version = "0.1.0", default-features = false }
"#;

    /// Members listed on one line come back in order.
    #[test]
    fn members_on_one_line_are_read_in_order() {
        assert_eq!(
            workspace_members(ROOT_MANIFEST).unwrap(),
            [
                "core",
                "codec",
                "transport",
                "gateway",
                "monitor",
                "plexus",
                "xtask"
            ]
        );
    }

    /// A members array spread over lines, with comments and a trailing comma, is read whole.
    #[test]
    fn members_over_several_lines_with_comments_are_read() {
        let manifest = r#"
[package]
name = "not-the-workspace" # members = ["wrong"]

[workspace]
members = [
    "core", # the runtime
    # "disabled",
    'bench',
]
exclude = ["fuzz"]
"#;
        assert_eq!(workspace_members(manifest).unwrap(), ["core", "bench"]);
    }

    /// A `members` key outside the `[workspace]` table is not mistaken for the members.
    #[test]
    fn members_outside_the_workspace_table_are_ignored() {
        let manifest = "[package]\nmembers = [\"a\"]\n[workspace]\nresolver = \"3\"\n";
        assert!(workspace_members(manifest).is_err());
    }

    /// Glob members are refused rather than expanded wrongly or skipped.
    #[test]
    fn glob_members_are_refused() {
        let error = workspace_members("[workspace]\nmembers = [\"crates/*\"]\n").unwrap_err();
        assert!(error.contains("crates/*"), "{error}");
    }

    /// An array that never closes is an error, not a truncated list.
    #[test]
    fn unclosed_members_array_is_an_error() {
        assert!(workspace_members("[workspace]\nmembers = [\n\"core\",\n").is_err());
    }

    /// The package name comes from `[package]`, not from a dependency table.
    #[test]
    fn package_name_is_read_from_the_package_table() {
        let manifest = r#"
[lib]
name = "renamed_lib"

[package]
name = "plexus-core" # the runtime
version.workspace = true

[dependencies]
name = { path = "x" }
"#;
        assert_eq!(package_name(manifest).as_deref(), Some("plexus-core"));
        assert_eq!(package_name("[dependencies]\nname = \"x\"\n"), None);
    }

    /// Table headers are recognised with spacing, comments and array-of-table brackets.
    #[test]
    fn table_headers_are_recognised() {
        assert_eq!(table_header("[lib]"), Some("lib"));
        assert_eq!(table_header("  [ lib ]  # library"), Some("lib"));
        assert_eq!(table_header("[[bin]]"), Some("bin"));
        assert_eq!(table_header("name = \"[lib]\""), None);
        assert!(has_table("[package]\n[lib]\npath = \"x.rs\"\n", "lib"));
        assert!(!has_table("[package]\nname = \"x\"\n", "lib"));
    }

    /// A `#` inside a string is content; outside one it starts a comment.
    #[test]
    fn comments_are_stripped_outside_strings_only() {
        assert_eq!(strip_comment(r##"a = "#1" # note"##), r##"a = "#1" "##);
        assert_eq!(strip_comment("# all comment"), "");
        assert_eq!(strip_comment("plain"), "plain");
    }

    /// This repository's own libraries are found, and xtask, a binary, is not among them.
    #[test]
    fn this_workspace_has_libraries_but_xtask_is_not_one() {
        let members = libraries(&repo_root().unwrap()).unwrap();
        assert!(
            members.iter().any(|name| name == "plexus-core"),
            "{members:?}"
        );
        assert!(!members.iter().any(|name| name == "xtask"), "{members:?}");
    }
}
