// folovllm._C: the Python module setup.py builds from the kernels in this folder (notebook 02 explains the build).
// Each kernel file includes only ATen, which compiles in a few seconds; this file alone includes pybind11.
#include <torch/csrc/utils/pybind.h>

bool available();                                                    // thin_gemm.cpp: built with AVX2 and FMA
at::Tensor pack16(at::Tensor w);
at::Tensor gemm16(at::Tensor x, at::Tensor packed, bool prefetch);
at::Tensor paged_decode(at::Tensor q, at::Tensor k_cache, at::Tensor v_cache, at::Tensor block_tables,   // paged_decode.cpp
                        at::Tensor seq_lens, double scale, bool stream);
at::Tensor int4_gemm(at::Tensor x, at::Tensor codes, at::Tensor scales, at::Tensor zeros, int64_t gs);  // int4_gemm.cpp
at::Tensor decode_layers(at::Tensor x, at::Tensor cos, at::Tensor sin, std::vector<at::Tensor> weights,   // decode_step.cpp
                         std::vector<int64_t> group_sizes, std::vector<at::Tensor> k_caches, std::vector<at::Tensor> v_caches,
                         at::Tensor slot_mapping, at::Tensor block_tables, at::Tensor seq_lens, int64_t H, int64_t Hkv, double eps);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "folovllm's C++ kernels, compiled at install";
  m.def("available", &available, "whether the thin GEMM was compiled with AVX2 and FMA");
  m.def("pack16", &pack16, "W [N, K] -> 16-column panels [N/16, K, 16]");
  m.def("gemm16", &gemm16, "x [M, K] times packed W^T -> [M, N]", py::arg("x"), py::arg("packed"), py::arg("prefetch") = true);
  m.def("paged_decode", &paged_decode, "one query token per sequence against its paged K/V", py::arg("q"), py::arg("k_cache"),
        py::arg("v_cache"), py::arg("block_tables"), py::arg("seq_lens"), py::arg("scale"), py::arg("stream") = true);
  m.def("int4_gemm", &int4_gemm, "x [M, K] times 4-bit GPTQ weights -> [M, N]");
  m.def("decode_layers", &decode_layers, "every decoder layer of one decode step, in place on x [B, hidden]",
        py::call_guard<py::gil_scoped_release>());   // a step takes milliseconds: let other Python threads (the server) run
}
