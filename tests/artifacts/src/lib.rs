//! Paths of the plugins built for tests.
