//! Window statistics over up to two contiguous ring segments, skipping missing (`NaN`) values.

/// Mean, sample standard deviation, max and least-squares slope (per second) of `x` against `t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stats {
    pub(crate) mean: f64,
    pub(crate) std: f64,
    pub(crate) max: f64,
    pub(crate) slope: f64,
}

/// Two passes (mean first, then centred sums) for numerical stability on large values such as bytes.
/// `segments` pairs values with their timestamps; timestamps should be relative to a nearby origin.
/// Fewer than one valid value gives all `NaN`; fewer than two gives `NaN` std and slope.
#[inline]
pub(crate) fn stats(segments: [(&[f64], &[f64]); 2]) -> Stats {
    let (mut n, mut sx, mut st, mut max) = (0usize, 0.0, 0.0, f64::NEG_INFINITY);
    for (xs, ts) in segments {
        for (x, t) in xs.iter().zip(ts) {
            if x.is_nan() {
                continue;
            }
            n += 1;
            sx += x;
            st += t;
            max = max.max(*x);
        }
    }
    if n == 0 {
        return Stats {
            mean: f64::NAN,
            std: f64::NAN,
            max: f64::NAN,
            slope: f64::NAN,
        };
    }
    let nf = n as f64;
    let (mx, mt) = (sx / nf, st / nf);
    let (mut sxx, mut stx, mut stt) = (0.0, 0.0, 0.0);
    for (xs, ts) in segments {
        for (x, t) in xs.iter().zip(ts) {
            if x.is_nan() {
                continue;
            }
            let (dx, dt) = (x - mx, t - mt);
            sxx += dx * dx;
            stx += dt * dx;
            stt += dt * dt;
        }
    }
    let (std, slope) = if n < 2 {
        (f64::NAN, f64::NAN)
    } else {
        let slope = if stt > 0.0 { stx / stt } else { f64::NAN };
        ((sxx / (nf - 1.0)).sqrt(), slope)
    };
    Stats {
        mean: mx,
        std,
        max,
        slope,
    }
}
