//! The generated certificate sources behind `https:quick` and `https:ca`,
//! as [`Issuer`]s for the resolver: both made by `ca` (rcgen), this file
//! only adapts them.

use std::path::PathBuf;
use std::time::SystemTime;

use super::ca::{self, DevCa};
use super::info::CertSource;
use super::resolver::{Issuer, Served};

/// `https:quick`: a self-signed leaf, renewed in place like the CA's.
pub struct QuickIssuer;

impl Issuer for QuickIssuer {
    fn source(&self) -> CertSource {
        CertSource::Quick
    }

    fn issue(&self, name: &str, now: SystemTime) -> Result<Served, String> {
        let leaf = ca::self_signed(name, now).map_err(|e| e.to_string())?;
        Served::from_leaf(&leaf)
    }

    fn permits(&self, _name: &str) -> bool {
        false
    }
}

/// `https:ca`: leaves signed by the dev CA of `home`, kept in `home/certs/`.
pub struct CaIssuer {
    pub ca: DevCa,
    pub home: PathBuf,
}

impl Issuer for CaIssuer {
    fn source(&self) -> CertSource {
        CertSource::Ca
    }

    fn issue(&self, name: &str, now: SystemTime) -> Result<Served, String> {
        let leaf = self.ca.leaf_for(&self.home, name, now).map_err(|e| e.to_string())?;
        Served::from_leaf(&leaf)
    }

    fn permits(&self, name: &str) -> bool {
        self.ca.permits(name)
    }
}
