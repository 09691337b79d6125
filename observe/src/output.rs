//! Output checks: `nan_output` anomalies for results that contain NaN or infinite values.

/// Whether an output is valid. Implemented for `f32`, `f64`, slices, arrays, `Vec`s and `Option`s of
/// them, references, and (feature `ndarray`) ndarray arrays of `f32`/`f64`. Use it with
/// `#[observe(..., check_output)]`; implement it for your own output types.
pub trait OutputCheck {
    /// `false` when the output is corrupt (contains NaN or infinity).
    fn is_valid_output(&self) -> bool;
}

impl OutputCheck for f32 {
    fn is_valid_output(&self) -> bool {
        self.is_finite()
    }
}

impl OutputCheck for f64 {
    fn is_valid_output(&self) -> bool {
        self.is_finite()
    }
}

impl<T: OutputCheck> OutputCheck for [T] {
    fn is_valid_output(&self) -> bool {
        self.iter().all(OutputCheck::is_valid_output)
    }
}

impl<T: OutputCheck, const N: usize> OutputCheck for [T; N] {
    fn is_valid_output(&self) -> bool {
        self.iter().all(OutputCheck::is_valid_output)
    }
}

impl<T: OutputCheck> OutputCheck for Vec<T> {
    fn is_valid_output(&self) -> bool {
        self.as_slice().is_valid_output()
    }
}

impl<T: OutputCheck> OutputCheck for Option<T> {
    fn is_valid_output(&self) -> bool {
        self.as_ref().is_none_or(OutputCheck::is_valid_output)
    }
}

impl<T: OutputCheck + ?Sized> OutputCheck for &T {
    fn is_valid_output(&self) -> bool {
        (**self).is_valid_output()
    }
}

impl<T: OutputCheck + ?Sized> OutputCheck for Box<T> {
    fn is_valid_output(&self) -> bool {
        (**self).is_valid_output()
    }
}

#[cfg(feature = "ndarray")]
impl<A, S, D> OutputCheck for ndarray::ArrayBase<S, D>
where
    A: OutputCheck,
    S: ndarray::Data<Elem = A>,
    D: ndarray::Dimension,
{
    fn is_valid_output(&self) -> bool {
        self.iter().all(OutputCheck::is_valid_output)
    }
}

/// Used by the expansion of `check_output`.
#[doc(hidden)]
#[inline]
pub fn check_output<T: OutputCheck + ?Sized>(v: &T) -> bool {
    v.is_valid_output()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_infinity_anywhere_fail() {
        assert!(vec![1.0f32, 2.0].is_valid_output());
        assert!(!vec![1.0f32, f32::NAN].is_valid_output());
        assert!(![0.0f64, f64::INFINITY].is_valid_output());
        assert!(!Some(vec![vec![f64::NAN]]).is_valid_output());
        assert!(None::<f32>.is_valid_output());
        let s: &[f64] = &[1.0];
        assert!(s.is_valid_output());
    }

    #[cfg(feature = "ndarray")]
    #[test]
    fn ndarray_arrays_are_checked() {
        let a = ndarray::array![[1.0f32, 2.0], [3.0, f32::NAN]];
        assert!(!a.is_valid_output());
        assert!(a.row(0).is_valid_output());
    }
}
