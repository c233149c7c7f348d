//! `golos-simulator`: serves the simulated providers until Ctrl-C.

fn main() {}
