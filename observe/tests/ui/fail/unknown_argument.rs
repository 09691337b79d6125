use vigil_observe::observe;

#[observe(model = "m", stages = "s")]
fn f() {}

fn main() {}
