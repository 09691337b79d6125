use vigil_observe::observe;

#[observe(model = "a", model = "b")]
fn f() {}

fn main() {}
