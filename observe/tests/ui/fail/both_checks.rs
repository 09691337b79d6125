use vigil_observe::observe;

fn ok(_: &f32) -> bool {
    true
}

#[observe(model = "m", check = ok, check_output)]
fn f() -> f32 {
    1.0
}

fn main() {}
