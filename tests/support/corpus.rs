//! The corpora of custom resources the refusal tests share: `tests/invalid/`
//! (each file one case the API server must refuse, naming the field) and
//! `tests/valid/` plus `examples/` (everything there must be accepted).
//!
//! A file holds one or more YAML documents applied in order; in an invalid
//! case every document but the last is a valid earlier state of the object
//! (for rules comparing with `oldSelf`) and the last is refused. Header
//! comments: `# expect: <text>` — the refusal message must contain it (the
//! field); `# refused-by: schema` — the OpenAPI schema (type, enum) refuses
//! it rather than a CEL rule, so only a real API server can check it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Debug)]
pub struct Case {
    pub file: String,
    pub expect: String,
    pub schema_only: bool,
    pub docs: Vec<Value>,
    /// The raw YAML documents, for `kubectl apply -f -`.
    pub raw: Vec<String>,
}

impl Case {
    /// The document that must be refused.
    pub fn refused(&self) -> &Value {
        self.docs.last().expect("a case has a document")
    }

    /// The earlier, valid states of the object.
    pub fn setup(&self) -> &[Value] {
        &self.docs[..self.docs.len() - 1]
    }

    pub fn kind(&self) -> &str {
        self.refused()["kind"].as_str().expect("kind")
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

pub fn load(path: &Path) -> Case {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let header = |key: &str| {
        text.lines()
            .take_while(|l| l.starts_with('#'))
            .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
            .map(str::to_string)
    };
    let raw: Vec<String> = text
        .split("\n---\n")
        .map(str::to_string)
        .filter(|d| {
            d.lines()
                .any(|l| !l.starts_with('#') && !l.trim().is_empty())
        })
        .collect();
    let docs = raw
        .iter()
        .map(|d| {
            let v: serde_yaml::Value = serde_yaml::from_str(d)
                .unwrap_or_else(|e| panic!("{}: bad YAML: {e}", path.display()));
            serde_json::to_value(v).expect("json")
        })
        .collect::<Vec<_>>();
    assert!(!docs.is_empty(), "{} has no document", path.display());
    Case {
        file: path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned(),
        expect: header("expect").unwrap_or_default(),
        schema_only: header("refused-by").as_deref() == Some("schema"),
        docs,
        raw,
    }
}

/// Every case of `tests/invalid/`.
pub fn invalid() -> Vec<Case> {
    yaml_files(&Path::new(ROOT).join("tests/invalid"))
        .iter()
        .map(|p| load(p))
        .collect()
}

/// Every file of `tests/valid/` and `examples/`.
pub fn valid() -> Vec<Case> {
    let mut files = yaml_files(&Path::new(ROOT).join("tests/valid"));
    files.extend(yaml_files(&Path::new(ROOT).join("examples")));
    files.iter().map(|p| load(p)).collect()
}
