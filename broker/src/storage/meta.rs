//! The metadata file: streams, shards, consumers, tags, reshard history and settings.
//!
//! Format: one JSON document, `meta.json` in the data directory. It is replaced atomically:
//! written to `meta.json.tmp`, fsynced, renamed over `meta.json`, and the directory fsynced, so
//! after a crash the file is either the old or the new version, never a mix.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Reads and atomically replaces one JSON file.
#[derive(Debug, Clone)]
pub struct MetaFile {
    path: PathBuf,
    dir: PathBuf,
}

impl MetaFile {
    /// The metadata file in `dir`.
    pub fn new(dir: &Path, name: &str) -> MetaFile {
        MetaFile {
            path: dir.join(name),
            dir: dir.to_owned(),
        }
    }

    /// The current contents, or `None` if the file does not exist yet.
    pub fn load(&self) -> io::Result<Option<Vec<u8>>> {
        match fs::read(&self.path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the contents atomically and durably.
    pub fn store(&self, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_replaces_and_load_reads() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetaFile::new(dir.path(), "meta.json");
        assert_eq!(m.load().unwrap(), None);
        m.store(b"{\"a\":1}").unwrap();
        m.store(b"{\"a\":2}").unwrap();
        assert_eq!(m.load().unwrap().unwrap(), b"{\"a\":2}");
        assert!(!dir.path().join("meta.tmp").exists());
    }
}
