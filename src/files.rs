//! Files the programs write for themselves: written so that a crash at any moment leaves
//! either the old file or the new one, and, for secrets, readable by their owner only.
//!
//! The servant rewrites its configuration (`/ban`), its key file (a new incarnation at
//! every start), its known-peers file and a download's progress. Each is written to a
//! temporary file in the same folder, flushed to disk, then renamed over the old one; a
//! secret's temporary file is created with mode 0600 before a byte of it is written, so
//! the key is never readable by others, not even for a moment.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Who may read the file written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// As the file it replaces (or the default for new files, after the umask).
    AsBefore,
    /// The owner only (0600): keys and other secrets.
    Private,
}

/// Writes `bytes` to `path` atomically (see the module docs).
pub fn write_atomically(path: &Path, bytes: &[u8], access: Access) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        if access == Access::Private {
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        match access {
            // A temporary file left over by an earlier crash keeps its old mode: set it.
            Access::Private => f.set_permissions(fs::Permissions::from_mode(0o600))?,
            Access::AsBefore => {
                if let Ok(meta) = fs::metadata(path) {
                    f.set_permissions(meta.permissions())?;
                }
            }
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The permission bits of `path` that let others than its owner in (group or world), if
/// any: a secret with any of them set is refused, as ssh refuses such a private key.
pub fn open_to_others(meta: &fs::Metadata) -> Option<u32> {
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_file_is_0600_from_the_start_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("genp2p-files-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret.key");
        write_atomically(&path, b"one", Access::Private).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(open_to_others(&meta), None);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(open_to_others(&fs::metadata(&path).unwrap()), Some(0o644));
        write_atomically(&path, b"two", Access::Private).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("secret.key")]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
