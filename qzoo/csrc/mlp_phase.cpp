// One of qzoo's compiled parts: the per-update loop of a small MLP's training phase (qzoo/fastpath.py, MLPPhase.run),
// written with the same ATen calls in the same order as the Python loop, so the same kernels compute the same
// numbers (tested bit for bit). What it saves is Python's share of each call: at CartPole's sizes an update is
// ~30 small calls around three 64x256x256 products. Built by qzoo/native.py (torch.utils.cpp_extension).
#include "native.h"

#include <optional>
#include <vector>

using at::Tensor;

// MLPPhase.forward: Q(x, .) and the layer inputs, from (bias, weight^T) pairs; the ReLUs in place; a dueling head
// combines V + A - mean_a A as MLPBackprop.combine does.
static Tensor forward(const std::vector<Tensor>& biases, const std::vector<Tensor>& weights_t,
                      const std::optional<Tensor>& value_bias, const std::optional<Tensor>& value_weight_t,
                      const Tensor& x, std::vector<Tensor>& inputs) {
  inputs.clear();
  inputs.push_back(x);
  const size_t n_layers = weights_t.size();
  for (size_t i = 0; i + 1 < n_layers; ++i) inputs.push_back(at::addmm(biases[i], inputs.back(), weights_t[i]).relu_());
  Tensor q = at::addmm(biases[n_layers - 1], inputs.back(), weights_t[n_layers - 1]);
  if (value_bias) q = at::addmm(*value_bias, inputs.back(), *value_weight_t).add(q).sub(q.mean(1, true));
  return q;
}

// Updates [start, stop) of a phase. Per update u: (Double DQN: the targets of batch u from the online net as it is
// now) q = MLP(xs[u]); the TD loss's gradient at the taken actions; the hand-written backward into the gradient
// buffers (views of flat_grad, in the parameters' order: w0, b0, w1, b1, ..., [value w, value b]); clipping
// unless the squared norm is below skip_below; one fused Adam step.
void mlp_phase(const std::vector<Tensor>& weights, const std::vector<Tensor>& weights_t,
               const std::vector<Tensor>& biases, const std::optional<Tensor>& value_weight,
               const std::optional<Tensor>& value_weight_t, const std::optional<Tensor>& value_bias,
               std::vector<Tensor> grads, const Tensor& flat_grad, const Tensor& xs, const Tensor& actions,
               const Tensor& target_rows, const Tensor& q_rows, const std::optional<Tensor>& next_xs,
               const std::optional<Tensor>& rewards, const std::optional<Tensor>& discounts,
               const std::optional<Tensor>& q_targets, int64_t start, int64_t stop, double scale, bool huber,
               double max_norm, double skip_below, const std::vector<Tensor>& params,
               const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
               const std::vector<Tensor>& steps, double lr, double beta1, double beta2, double weight_decay,
               double eps) {
  c10::InferenceMode guard;
  const int64_t n_layers = static_cast<int64_t>(weights.size());
  const bool dueling = value_bias.has_value(), double_q = next_xs.has_value();
  std::vector<Tensor> inputs, scratch;
  for (int64_t u = start; u < stop; ++u) {
    Tensor target_row = target_rows.select(0, u);
    if (double_q) {  // y = r + discount * Q_target(s_t, argmax_a Q(s_t, a))  (qzoo.losses.q_learning_target)
      Tensor best = forward(biases, weights_t, value_bias, value_weight_t, next_xs->select(0, u), scratch).argmax(1, true);
      Tensor next_value = q_targets->select(0, u).gather(1, best).squeeze(1);
      target_row.copy_(rewards->select(0, u).add(discounts->select(0, u).mul(next_value)).unsqueeze(1));
    }
    Tensor q = forward(biases, weights_t, value_bias, value_weight_t, xs.select(0, u), inputs);
    Tensor action = actions.select(0, u), q_row = q_rows.select(0, u);
    Tensor delta = at::gather_out(q_row, q, 1, action).sub(target_row);  // qzoo.losses.td_loss_grad
    Tensor td_grad = huber ? delta.clamp_(-1.0, 1.0).mul_(scale) : delta.mul_(2.0).mul_(scale);
    Tensor grad = at::zeros_like(q).scatter_(1, action, td_grad), grad_v;
    if (dueling) {  // MLPBackprop.head_grads
      grad_v = grad.sum(1, true);
      grad = grad.sub(grad_v.div(grad.size(1)));
      at::mm_out(grads[2 * n_layers], grad_v.t(), inputs.back());
      at::sum_out(grads[2 * n_layers + 1], grad_v, 0);
    }
    for (int64_t i = n_layers - 1; i >= 0; --i) {  // MLPBackprop.backward
      at::mm_out(grads[2 * i], grad.t(), inputs[i]);
      at::sum_out(grads[2 * i + 1], grad, 0);
      if (i > 0) {
        Tensor grad_h = grad.mm(weights[i]);
        if (dueling && i == n_layers - 1) grad_h = grad_h.add(grad_v.mm(*value_weight));
        grad = at::threshold_backward(grad_h, inputs[i], 0);
      }
    }
    if (!(at::dot(flat_grad, flat_grad).item<float>() < skip_below)) {  // qzoo.fastpath.clip_grad_norm
      Tensor total = at::linalg_vector_norm(at::stack(at::_foreach_norm(grads)));
      Tensor factor = at::clamp(total.add(1e-6).reciprocal().mul(max_norm), std::nullopt, 1.0);
      if (factor.item<float>() != 1.0f) at::_foreach_mul_(grads, factor);
    }
    at::_foreach_add_(steps, 1);  // qzoo.fastpath.FusedAdamStep.step
    at::_fused_adam_(params, grads, exp_avgs, exp_avg_sqs, {}, steps, lr, beta1, beta2, weight_decay, eps,
                     /*amsgrad=*/false, /*maximize=*/false);
  }
}
