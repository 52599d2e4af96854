//! Assignment strategies for Parti.
