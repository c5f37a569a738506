//! UFW's own files, read and never written: `/etc/default/ufw`, `/etc/ufw/ufw.conf` and the rules
//! files UFW loads (`/etc/ufw/{before,user,after}.rules` and their `6` twins). Parsing is
//! hostreach-firewall's job (`hostreach_firewall::ufw`); this only reads the texts, each named by
//! where UFW reads it. A missing or unreadable file is a note, never an error.

use crate::error::{CollectError, Result};
use std::path::{Path, PathBuf};

/// The rules files UFW loads (the same list as `hostreach_firewall::ufw::RULES_FILES`).
pub const RULES_FILES: [&str; 6] = ["before.rules", "user.rules", "after.rules", "before6.rules", "user6.rules", "after6.rules"];

/// One file read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UfwFile {
    /// Where UFW reads it: `/etc/default/ufw`, `/etc/ufw/ufw.conf`, `/etc/ufw/user.rules`.
    pub path: String,
    /// The file actually read (the same path, or a file in a saved copy).
    pub read_from: PathBuf,
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UfwFiles {
    pub files: Vec<UfwFile>,
    /// One line per file not read: `/etc/ufw/after6.rules: not found`.
    pub missing: Vec<String>,
    /// The saved copy read, for `--ufw-dir`; `None` for this host's /etc.
    pub saved_copy: Option<PathBuf>,
}

impl UfwFiles {
    /// No file at all was read (UFW is not installed, or the directory holds none of its files).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

fn read_one(out: &mut UfwFiles, path: &str, candidates: &[PathBuf]) {
    for (i, p) in candidates.iter().enumerate() {
        match std::fs::read(p) {
            Ok(bytes) => {
                out.files.push(UfwFile { path: path.to_string(), read_from: p.clone(), text: String::from_utf8_lossy(&bytes).into_owned() });
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && i + 1 < candidates.len() => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.missing.push(format!("{}: not found", p.display()));
                return;
            }
            Err(e) => {
                let hint = if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) { " (UFW's files are readable by root only)" } else { "" };
                out.missing.push(format!("{}: {e}{hint}", p.display()));
                return;
            }
        }
    }
}

/// Reads UFW's files under `root` as a host lays them out (`root` is `/` on a live host).
pub fn read_root(root: &Path) -> UfwFiles {
    let mut out = UfwFiles::default();
    let etc = root.join("etc");
    read_one(&mut out, "/etc/default/ufw", &[etc.join("default/ufw")]);
    read_one(&mut out, "/etc/ufw/ufw.conf", &[etc.join("ufw/ufw.conf")]);
    for f in RULES_FILES {
        read_one(&mut out, &format!("/etc/ufw/{f}"), &[etc.join("ufw").join(f)]);
    }
    out
}

/// This host's UFW files.
pub fn read_live() -> UfwFiles {
    read_root(Path::new("/"))
}

/// A saved copy of UFW's files in one directory: `default-ufw` (or `default/ufw`), `ufw.conf` and
/// the `*.rules`, either in the directory itself or in its `ufw/` (a copy of /etc works too).
/// Fails only when the directory itself cannot be read.
pub fn read_saved(dir: &Path) -> Result<UfwFiles> {
    let meta = std::fs::metadata(dir).map_err(|e| CollectError::io(format!("UFW directory {}", dir.display()), e))?;
    if !meta.is_dir() {
        return Err(CollectError::Unavailable(format!("{} is not a directory (--ufw-dir takes a directory holding default-ufw and UFW's *.rules)", dir.display())));
    }
    let mut out = UfwFiles { saved_copy: Some(dir.to_path_buf()), ..Default::default() };
    // Where the rules files are: DIR, else DIR/ufw.
    let rules_dir = if dir.join("user.rules").exists() || !dir.join("ufw/user.rules").exists() { dir.to_path_buf() } else { dir.join("ufw") };
    read_one(&mut out, "/etc/default/ufw", &[dir.join("default-ufw"), dir.join("default/ufw")]);
    read_one(&mut out, "/etc/ufw/ufw.conf", &[dir.join("ufw.conf"), dir.join("ufw/ufw.conf")]);
    for f in RULES_FILES {
        read_one(&mut out, &format!("/etc/ufw/{f}"), &[rules_dir.join(f)]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hostreach-ufw-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_saved_copy_flat_or_as_etc() {
        // flat: default-ufw and the rules beside it
        let d = tmp("flat");
        std::fs::write(d.join("default-ufw"), "IPV6=yes\n").unwrap();
        std::fs::write(d.join("user.rules"), "*filter\nCOMMIT\n").unwrap();
        let f = read_saved(&d).unwrap();
        let paths: Vec<&str> = f.files.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(paths, ["/etc/default/ufw", "/etc/ufw/user.rules"]);
        assert_eq!(f.files[0].read_from, d.join("default-ufw"));
        assert_eq!(f.files[0].text, "IPV6=yes\n");
        // what is missing is listed, not an error
        assert_eq!(f.missing.len(), 6, "{:?}", f.missing);
        assert!(f.missing.iter().any(|m| m.ends_with("after6.rules: not found")));
        assert!(f.missing.iter().any(|m| m.ends_with("ufw.conf: not found")));
        assert_eq!(f.saved_copy.as_deref(), Some(d.as_path()));
        // a copy of /etc: default/ufw and ufw/*.rules
        let e = tmp("etc");
        std::fs::create_dir_all(e.join("default")).unwrap();
        std::fs::create_dir_all(e.join("ufw")).unwrap();
        std::fs::write(e.join("default/ufw"), "IPV6=no\n").unwrap();
        std::fs::write(e.join("ufw/ufw.conf"), "ENABLED=yes\n").unwrap();
        for r in RULES_FILES {
            std::fs::write(e.join("ufw").join(r), "*filter\nCOMMIT\n").unwrap();
        }
        let f = read_saved(&e).unwrap();
        assert_eq!(f.files.len(), 8, "{:?}", f.missing);
        assert!(f.missing.is_empty());
        assert_eq!(f.files.iter().find(|x| x.path == "/etc/ufw/after6.rules").unwrap().read_from, e.join("ufw/after6.rules"));
        // and laid out as a host's root
        let root = tmp("root");
        std::fs::rename(&e, root.join("etc")).unwrap();
        let f = read_root(&root);
        assert_eq!(f.files.len(), 8);
        assert_eq!(f.saved_copy, None);
        for p in [d, root] {
            let _ = std::fs::remove_dir_all(p);
        }
    }

    #[test]
    fn a_missing_directory_is_an_error_and_missing_files_are_not() {
        assert!(read_saved(Path::new("/nonexistent/hostreach-ufw")).is_err());
        let f = read_root(Path::new("/nonexistent/hostreach-root"));
        assert!(f.is_empty());
        assert_eq!(f.missing.len(), 8);
        let d = tmp("file");
        let file = d.join("x");
        std::fs::write(&file, "").unwrap();
        assert!(read_saved(&file).unwrap_err().to_string().contains("not a directory"));
        let _ = std::fs::remove_dir_all(d);
    }
}
