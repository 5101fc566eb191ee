//! The issue-tracker REST example (being written).
