// The Python module of qzoo's compiled parts (qzoo/native.py builds it from every .cpp in this folder).
#include "native.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("mlp_phase", &mlp_phase, "updates [start, stop) of an MLP training phase (qzoo.fastpath.MLPPhase.run)");
  m.def("centered_rmsprop", &centered_rmsprop, "one centered RMSprop step (qzoo.fastpath_cnn.CenteredRMSpropStep)");
  m.def("conv3x3_forward", &conv3x3_forward,
        "a 3x3 stride-1 convolution with 16 outputs, summed in one of oneDNN's orders (qzoo.fastpath_cnn.conv3x3)");
  m.def("conv3x3_weight_grad", &conv3x3_weight_grad,
        "weight and bias gradients of a 3x3 stride-1 convolution with 16 outputs (qzoo.fastpath_cnn.MinAtarPhase)");
}
