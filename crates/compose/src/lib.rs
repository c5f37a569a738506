//! `hostreach compose lint`: what in a compose project will break container-to-host traffic.
//!
//! The project is read the way compose reads it — the files compose picks (or an explicit
//! list), override merging, `.env` interpolation — with the file and line of every value kept
//! through all of it, so each finding says where to look. No I/O happens here: files are read
//! through the caller's [`Fs`], the environment and host facts are passed in.
//!
//! ```
//! use hostreach_compose::{lint_project, HostFacts, Options, Fs};
//! # use std::path::Path;
//! # struct One(&'static str);
//! # impl Fs for One {
//! #     fn read(&self, _: &Path) -> std::io::Result<String> { Ok(self.0.to_string()) }
//! #     fn exists(&self, p: &Path) -> bool { p == Path::new("compose.yaml") }
//! # }
//! let fs = One("services:\n  web:\n    image: app\n    environment:\n      API: http://host.docker.internal:8080\n");
//! let report = lint_project(&Options::default(), &fs, &HostFacts::default());
//! assert_eq!(report.findings[0].code.as_str(), "HOST_ALIAS_NOT_MAPPED");
//! assert_eq!((report.findings[0].file.as_str(), report.findings[0].line), ("compose.yaml", 5));
//! ```

pub mod files;
pub mod finding;
pub mod host;
pub mod interp;
pub mod load;
pub mod merge;
pub mod rules;
pub mod scan;
pub mod schema;
pub mod yaml;

pub use finding::{LintCode, LintError, LintEvidence, LintFinding, LintNote, LintReport};
pub use host::{Egress, HostFacts};
pub use load::{Fs, Options, Project, load};

/// Loads the project and lints it.
pub fn lint_project(opts: &Options, fs: &dyn Fs, facts: &HostFacts) -> LintReport {
    let project = load(opts, fs);
    lint(&project, facts)
}

/// Lints a loaded project.
pub fn lint(project: &Project, facts: &HostFacts) -> LintReport {
    let mut notes = project.notes.clone();
    if let Some(why) = &facts.unavailable {
        notes.push(LintNote {
            file: None,
            line: None,
            message: format!("host facts unavailable ({why}): linted without them — HARDCODED_GATEWAY cannot say which bridge owns an address"),
        });
    }
    let findings = rules::lint(project, facts, &mut notes);
    let mut errors = project.errors.clone();
    let file_order = |f: &str| {
        project
            .sources
            .iter()
            .position(|s| s.path == f)
            .unwrap_or(usize::MAX)
    };
    errors.sort_by_key(|e| (file_order(&e.file), e.line));
    LintReport {
        schema: hostreach_model::SCHEMA.to_string(),
        findings,
        files: project.files(),
        env_file: project.env_file.clone(),
        errors,
        notes,
    }
}
