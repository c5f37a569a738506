//! Which files make the project: the ones compose itself picks, or an explicit `-f`-style list.

use std::path::{Path, PathBuf};

/// The names compose looks for, in its order of preference (Docker Compose v2).
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];
/// The override files compose adds after the main one, in its order of preference.
pub const OVERRIDE_FILES: [&str; 4] = [
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// The files compose would pick starting from `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    /// The main file, then the override file if there is one.
    pub files: Vec<PathBuf>,
    /// Other candidates compose ignores (it warns about them too).
    pub ignored: Vec<PathBuf>,
}

/// Picks the files as compose does: in `dir`, else in the nearest parent folder that has one,
/// the first of [`DEFAULT_FILES`] present, then the first of [`OVERRIDE_FILES`] present in that
/// same folder. `exists` is the caller's view of the file system.
pub fn pick(dir: &Path, exists: &dyn Fn(&Path) -> bool) -> Option<Picked> {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        let found: Vec<PathBuf> = DEFAULT_FILES
            .iter()
            .map(|n| join(d, n))
            .filter(|p| exists(p))
            .collect();
        if let Some(main) = found.first() {
            let mut files = vec![main.clone()];
            let mut ignored: Vec<PathBuf> = found[1..].to_vec();
            let overrides: Vec<PathBuf> = OVERRIDE_FILES
                .iter()
                .map(|n| join(d, n))
                .filter(|p| exists(p))
                .collect();
            if let Some(o) = overrides.first() {
                files.push(o.clone());
                ignored.extend(overrides[1..].iter().cloned());
            }
            return Some(Picked { files, ignored });
        }
        cur = d.parent().filter(|p| !p.as_os_str().is_empty());
    }
    None
}

/// `COMPOSE_FILE` (with `COMPOSE_PATH_SEPARATOR`, default `:`), as compose reads it.
pub fn from_compose_file_var(value: &str, separator: Option<&str>) -> Vec<PathBuf> {
    let sep = separator.filter(|s| !s.is_empty()).unwrap_or(":");
    value
        .split(sep)
        .filter(|s| !s.trim().is_empty())
        .map(|s| PathBuf::from(s.trim()))
        .collect()
}

/// `dir/name`, without a leading `./` when `dir` is `.` or empty.
fn join(dir: &Path, name: &str) -> PathBuf {
    if dir.as_os_str().is_empty() || dir == Path::new(".") {
        PathBuf::from(name)
    } else {
        dir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn fs(paths: &[&str]) -> impl Fn(&Path) -> bool {
        let set: HashSet<PathBuf> = paths.iter().map(PathBuf::from).collect();
        move |p: &Path| set.contains(p)
    }

    #[test]
    fn compose_yaml_first_then_its_override() {
        let p = pick(
            Path::new("."),
            &fs(&[
                "compose.yaml",
                "docker-compose.yml",
                "compose.override.yaml",
            ]),
        )
        .unwrap();
        assert_eq!(
            p.files,
            vec![
                PathBuf::from("compose.yaml"),
                PathBuf::from("compose.override.yaml")
            ]
        );
        assert_eq!(p.ignored, vec![PathBuf::from("docker-compose.yml")]);
    }

    #[test]
    fn yml_before_yaml_for_docker_compose_names() {
        let p = pick(
            Path::new("proj"),
            &fs(&[
                "proj/docker-compose.yaml",
                "proj/docker-compose.yml",
                "proj/docker-compose.override.yml",
            ]),
        )
        .unwrap();
        assert_eq!(
            p.files,
            vec![
                PathBuf::from("proj/docker-compose.yml"),
                PathBuf::from("proj/docker-compose.override.yml")
            ]
        );
    }

    #[test]
    fn override_alone_is_not_a_project_and_parents_are_searched() {
        assert!(pick(Path::new("a"), &fs(&["a/compose.override.yaml"])).is_none());
        let p = pick(Path::new("a/b/c"), &fs(&["a/compose.yml"])).unwrap();
        assert_eq!(p.files, vec![PathBuf::from("a/compose.yml")]);
        let p = pick(Path::new("/srv/app/sub"), &fs(&["/srv/app/compose.yaml"])).unwrap();
        assert_eq!(p.files, vec![PathBuf::from("/srv/app/compose.yaml")]);
    }

    #[test]
    fn compose_file_variable() {
        assert_eq!(
            from_compose_file_var("a.yml:b.yml", None),
            vec![PathBuf::from("a.yml"), PathBuf::from("b.yml")]
        );
        assert_eq!(
            from_compose_file_var("a.yml;b.yml", Some(";")),
            vec![PathBuf::from("a.yml"), PathBuf::from("b.yml")]
        );
    }
}
