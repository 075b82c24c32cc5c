//! The mixture of experts that picks a learned embedding (METHOD.md §5): a linear router without
//! bias over a hidden state, softmax, the `K` most probable experts, their (optionally
//! renormalised) weights, and the weighted sum of their embeddings. `n_expert = 1` is the static
//! variant: the output is the one expert's embedding.

use burn::module::{Module, Param};
use burn::tensor::{activation::softmax, backend::Backend, Tensor, TensorData};
use confu_core::{Ops, ToHost};
use confu_model::param::lazy;
use confu_model::Linear;
use serde::{Deserialize, Serialize};

/// One routing decision, as the host sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteDecision {
    /// Router logits, one per expert.
    pub logits: Vec<f32>,
    /// Softmax of the logits.
    pub probs: Vec<f32>,
    /// The kept experts, most probable first (ties: the lower index first).
    pub experts: Vec<usize>,
    /// Their weights (renormalised to sum 1 when asked).
    pub weights: Vec<f32>,
}

/// Router `router.weight: [n_expert, input]` and expert embeddings `experts: [n_expert, width]`.
#[derive(Module, Debug)]
pub struct Moe<B: Backend> {
    pub router: Linear<B>,
    pub experts: Param<Tensor<B, 2>>,
}

impl<B: Backend> Moe<B> {
    /// A skeleton routing `input`-wide states over `n_expert` embeddings of `width`.
    pub fn new(n_expert: usize, input: usize, width: usize, device: &B::Device) -> Self {
        Self {
            router: Linear::new(input, n_expert, false, device),
            experts: lazy([n_expert, width], device),
        }
    }

    /// Route each row of `x: [rows, input]`: the embeddings `[rows, width]` (differentiable in
    /// the router and the experts) and each row's decision.
    pub fn route(
        &self,
        x: Tensor<B, 2>,
        top_k: usize,
        renormalize: bool,
        ops: &dyn Ops<B>,
    ) -> (Tensor<B, 2>, Vec<RouteDecision>) {
        let logits = self.router.forward(x, ops);
        let [rows, n] = logits.dims();
        let probs = softmax(logits.clone(), 1);
        let (z, p) = (logits.to_host(), probs.clone().to_host());
        let mut keep = vec![0f32; rows * n];
        let decisions: Vec<RouteDecision> = (0..rows)
            .map(|r| {
                let (zr, pr) = (&z[r * n..(r + 1) * n], &p[r * n..(r + 1) * n]);
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| pr[b].total_cmp(&pr[a]).then(a.cmp(&b)));
                order.truncate(top_k.min(n));
                let total: f32 = order.iter().map(|&i| pr[i]).sum();
                for &i in &order {
                    keep[r * n + i] = 1.0;
                }
                RouteDecision {
                    logits: zr.to_vec(),
                    probs: pr.to_vec(),
                    weights: order
                        .iter()
                        .map(|&i| if renormalize { pr[i] / total } else { pr[i] })
                        .collect(),
                    experts: order,
                }
            })
            .collect();
        let keep = Tensor::<B, 2>::from_data(TensorData::new(keep, [rows, n]), &probs.device());
        let mut gates = probs * keep;
        if renormalize {
            gates = gates.clone() / gates.sum_dim(1);
        }
        (gates.matmul(self.experts.val()), decisions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confu_core::PortableOps;

    type B = burn::backend::Flex;

    fn moe(router: Vec<f32>, experts: Vec<f32>, n: usize) -> Moe<B> {
        let d = Default::default();
        let mut m = Moe::<B>::new(n, 2, 3, &d);
        m.router.weight =
            Param::from_tensor(Tensor::from_data(TensorData::new(router, [n, 2]), &d));
        m.experts = Param::from_tensor(Tensor::from_data(TensorData::new(experts, [n, 3]), &d));
        m
    }

    #[test]
    fn top_k_weights_are_renormalised_and_mix_the_chosen_experts() {
        // Logits for x = [1, 0]: 2, 0, 1 -> probs order: expert 0, expert 2, expert 1.
        let m = moe(
            vec![2.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            vec![1., 0., 0., 0., 1., 0., 0., 0., 1.],
            3,
        );
        let x = Tensor::<B, 2>::from_data(
            TensorData::new(vec![1.0f32, 0.0], [1, 2]),
            &Default::default(),
        );
        let (e, d) = m.route(x, 2, true, &PortableOps);
        let d = &d[0];
        assert_eq!(d.experts, vec![0, 2]);
        let (p0, p2) = (d.probs[0], d.probs[2]);
        assert!((d.weights[0] - p0 / (p0 + p2)).abs() < 1e-6);
        assert!((d.weights.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let e = e.to_host();
        assert!(
            (e[0] - d.weights[0]).abs() < 1e-6 && e[1] == 0.0 && (e[2] - d.weights[1]).abs() < 1e-6
        );
    }

    #[test]
    fn one_expert_is_the_static_token() {
        let m = moe(vec![0.3, -0.2], vec![0.5, -1.0, 2.0], 1);
        let x = Tensor::<B, 2>::from_data(
            TensorData::new(vec![4.0f32, 1.0], [1, 2]),
            &Default::default(),
        );
        let (e, d) = m.route(x, 1, true, &PortableOps);
        assert_eq!(e.to_host(), vec![0.5, -1.0, 2.0]);
        assert_eq!(
            (d[0].experts.clone(), d[0].weights.clone()),
            (vec![0], vec![1.0])
        );
    }
}
