use vigil_observe::observe;

#[observe(stage = "s")]
fn f() {}

fn main() {}
