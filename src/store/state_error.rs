//! Why the state store could not do what was asked; shared by the store
//! port, its backends and the memory backend's journal.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The store did not answer (refused, reset, timed out). The detail is
    /// for the log only.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// Another instance on this store runs with other keys.
    #[error("{0}")]
    KeyMismatch(String),
}
