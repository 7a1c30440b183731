//! The vocabulary of the OCI Distribution Spec: digests, names, references, media types, manifests
//! and the closed list of error codes.
//!
//! Everything here is pure parsing with no I/O, so every layer above (API, repositories, storage)
//! can share one validated type for each concept instead of passing strings around: a value of
//! type [`Digest`] or [`ImageName`] has already been checked against the spec grammar.

pub mod digest;
pub mod error;
pub mod manifest;
pub mod name;
pub mod reference;

pub use digest::{Digest, DigestError};
pub use error::{ErrorCode, RegistryError};
pub use manifest::{Descriptor, ManifestError, ManifestInfo};
pub use name::{ImageName, NameError, RepoName};
pub use reference::{Reference, Tag};
