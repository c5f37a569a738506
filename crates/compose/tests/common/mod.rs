#![allow(dead_code)]
//! Shared by the fixture tests: the fixtures folder seen as the current directory.

use hostreach_compose::{Fs, HostFacts, LintCode, LintFinding, LintReport, Options};
use std::path::{Path, PathBuf};

/// tests/fixtures/compose/<name> at the repository root, as if it were the current folder.
pub struct FixtureFs(pub PathBuf);

impl Fs for FixtureFs {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(self.0.join(path))
    }
    fn exists(&self, path: &Path) -> bool {
        // stop the parent-folder search at the fixture's root
        !path.starts_with("..") && self.0.join(path).is_file()
    }
}

pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/compose")
        .join(name)
}

pub fn lint_with(name: &str, opts: Options, facts: &HostFacts) -> LintReport {
    hostreach_compose::lint_project(&opts, &FixtureFs(fixture_dir(name)), facts)
}

pub fn lint(name: &str) -> LintReport {
    lint_with(name, Options::default(), &HostFacts::default())
}

pub fn findings<'a>(r: &'a LintReport, code: LintCode, service: &str) -> Vec<&'a LintFinding> {
    r.findings
        .iter()
        .filter(|f| f.code == code && f.service.as_deref() == Some(service))
        .collect()
}

#[track_caller]
pub fn one<'a>(r: &'a LintReport, code: LintCode, service: &str) -> &'a LintFinding {
    let f = findings(r, code, service);
    assert_eq!(
        f.len(),
        1,
        "expected one {code} for {service}, got {f:#?}\nall: {:#?}",
        r.findings
    );
    f[0]
}

#[track_caller]
pub fn none(r: &LintReport, code: LintCode, service: &str) {
    let f = findings(r, code, service);
    assert!(f.is_empty(), "expected no {code} for {service}, got {f:#?}");
}

pub fn fix_lines(f: &LintFinding) -> Vec<String> {
    f.fix.iter().flat_map(|x| x.commands.clone()).collect()
}
