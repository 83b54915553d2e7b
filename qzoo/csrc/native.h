// qzoo's compiled parts (built by qzoo/native.py from every .cpp in this folder into one Python module).
#pragma once

#include <torch/extension.h>

#include <optional>
#include <vector>

// mlp_phase.cpp: updates [start, stop) of an MLP training phase (qzoo.fastpath.MLPPhase.run)
void mlp_phase(const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& weights_t,
               const std::vector<at::Tensor>& biases, const std::optional<at::Tensor>& value_weight,
               const std::optional<at::Tensor>& value_weight_t, const std::optional<at::Tensor>& value_bias,
               std::vector<at::Tensor> grads, const at::Tensor& flat_grad, const at::Tensor& xs,
               const at::Tensor& actions, const at::Tensor& target_rows, const at::Tensor& q_rows,
               const std::optional<at::Tensor>& next_xs, const std::optional<at::Tensor>& rewards,
               const std::optional<at::Tensor>& discounts, const std::optional<at::Tensor>& q_targets, int64_t start,
               int64_t stop, double scale, bool huber, double max_norm, double skip_below,
               const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& exp_avgs,
               const std::vector<at::Tensor>& exp_avg_sqs, const std::vector<at::Tensor>& steps, double lr,
               double beta1, double beta2, double weight_decay, double eps);

// minatar.cpp: one centered RMSprop step (qzoo.fastpath_cnn.CenteredRMSpropStep)
void centered_rmsprop(const std::vector<at::Tensor>& params, const at::Tensor& flat_grad,
                      const at::Tensor& square_avg, const at::Tensor& grad_avg, at::Tensor denom,
                      const at::Tensor& lifted, std::vector<at::Tensor> steps, double alpha, double eps, double lr);

// minatar.cpp: conv2d(x, weight, bias) for a 3x3, stride-1, unpadded convolution with 16 output channels
at::Tensor conv3x3_forward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                           bool taps_channel_last);

// minatar.cpp: (grad_weight, grad_bias) of a 3x3, stride-1, unpadded convolution with 16 output channels
std::vector<at::Tensor> conv3x3_weight_grad(const at::Tensor& grad_out, const at::Tensor& x);
