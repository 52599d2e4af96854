//! Test kit for Parti.
