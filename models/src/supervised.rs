//! The supervised layer: a weighted decision tree (linfa-trees honours sample weights; linfa-logistic
//! 0.8.1 ignores them) trained on labelled windows, kept as a compact tree with per-leaf anomaly
//! probabilities so scoring needs no allocation and the file stays readable.

use linfa::prelude::*;
use linfa_trees::{DecisionTree, TreeNode};
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Fewer labelled anomalous windows than this: stay unsupervised.
pub const MIN_POSITIVE_WINDOWS: usize = 5;

/// One node of the flattened tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    /// `x[feature] < threshold` goes left.
    Split {
        /// Feature index.
        feature: usize,
        /// Split value.
        threshold: f64,
        /// Left child index.
        left: usize,
        /// Right child index.
        right: usize,
    },
    /// What the labelled training windows in this leaf say.
    Leaf {
        /// Weighted share of anomalous among the labelled windows here (0.5 without labels).
        p_anomaly: f64,
        /// Share of the leaf's weight that comes from labelled windows: how much the labels speak here
        /// (0 where only unlabelled windows fell).
        evidence: f64,
    },
}

/// A decision tree over robust z-scores plus the unsupervised distance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeClassifier {
    /// Flattened nodes; the root is index 0.
    pub nodes: Vec<Node>,
}

fn flatten(node: &TreeNode<f64, usize>, out: &mut Vec<Node>) -> usize {
    let idx = out.len();
    out.push(Node::Leaf {
        p_anomaly: 0.5,
        evidence: 0.0,
    });
    let children = node.children();
    if let (false, Some(Some(l)), Some(Some(r))) =
        (node.is_leaf(), children.first(), children.get(1))
    {
        let (feature, threshold, _) = node.split();
        let left = flatten(l, out);
        let right = flatten(r, out);
        out[idx] = Node::Split {
            feature,
            threshold,
            left,
            right,
        };
    }
    idx
}

impl TreeClassifier {
    /// Fits on `records` (one row per window) with `anomaly` targets, sample `weights`, and which rows
    /// carry a real label (`labelled`; the others are weak normals).
    pub fn fit(
        records: &Array2<f64>,
        anomaly: &[bool],
        weights: &[f64],
        labelled: &[bool],
        max_depth: usize,
    ) -> Result<Self, ModelError> {
        let targets: Array1<usize> = anomaly.iter().map(|a| usize::from(*a)).collect();
        let w: Array1<f32> = weights.iter().map(|w| *w as f32).collect();
        let dataset = Dataset::new(records.clone(), targets).with_weights(w);
        let tree = DecisionTree::params()
            .max_depth(Some(max_depth))
            .min_weight_split(1.0)
            .min_weight_leaf(0.5)
            .fit(&dataset)
            .map_err(|e| ModelError::Param {
                name: "labels",
                message: format!("the decision tree could not be fitted: {e}"),
            })?;
        let mut nodes = Vec::new();
        flatten(tree.root_node(), &mut nodes);
        let mut c = Self { nodes };
        // Per leaf: weighted anomalous and labelled mass, and all mass, of the training rows reaching it.
        let mut mass = vec![(0.0f64, 0.0f64, 0.0f64); c.nodes.len()];
        for (((row, a), w), l) in records
            .rows()
            .into_iter()
            .zip(anomaly)
            .zip(weights)
            .zip(labelled)
        {
            let leaf = c.leaf_of(row.as_slice().unwrap_or(&[]));
            mass[leaf].2 += w;
            if *l {
                mass[leaf].1 += w;
                if *a {
                    mass[leaf].0 += w;
                }
            }
        }
        for (node, (wa, wl, wt)) in c.nodes.iter_mut().zip(mass) {
            if let Node::Leaf {
                p_anomaly,
                evidence,
            } = node
            {
                *p_anomaly = if wl > 0.0 { wa / wl } else { 0.5 };
                *evidence = if wt > 0.0 { wl / wt } else { 0.0 };
            }
        }
        Ok(c)
    }

    fn leaf_of(&self, x: &[f64]) -> usize {
        let mut i = 0;
        // Depth is bounded by construction; the step bound guards a damaged file from looping.
        for _ in 0..self.nodes.len() {
            match self.nodes.get(i) {
                Some(Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                }) => {
                    let v = x.get(*feature).copied().unwrap_or(0.0);
                    i = if v < *threshold { *left } else { *right };
                }
                _ => return i,
            }
        }
        i
    }

    /// `(p_anomaly, evidence)` of the leaf `x` falls in.
    pub fn leaf(&self, x: &[f64]) -> (f64, f64) {
        match self.nodes.get(self.leaf_of(x)) {
            Some(Node::Leaf {
                p_anomaly,
                evidence,
            }) => (*p_anomaly, *evidence),
            _ => (0.5, 0.0),
        }
    }

    /// Structural check for loaded files: children in range, probabilities in [0, 1].
    pub fn is_valid(&self, width: usize) -> bool {
        !self.nodes.is_empty()
            && self.nodes.iter().all(|n| match n {
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    *feature < width
                        && threshold.is_finite()
                        && *left < self.nodes.len()
                        && *right < self.nodes.len()
                }
                Node::Leaf {
                    p_anomaly,
                    evidence,
                } => (0.0..=1.0).contains(p_anomaly) && (0.0..=1.0).contains(evidence),
            })
    }
}
