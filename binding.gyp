{
  "targets": [
    {
      "target_name": "gradfleet_native",
      "sources": [
        "training/kernels/native/src/addon.cc",
        "training/kernels/native/src/batch-norm.cc",
        "training/kernels/native/src/conv.cc",
        "training/kernels/native/src/dnnl-context.cc",
        "training/kernels/native/src/flat-ops.cc",
        "training/kernels/native/src/matmul.cc",
        "training/kernels/native/src/max-pool.cc",
        "training/kernels/native/src/reorder.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O3", "-ffp-contract=off", "-fno-math-errno", "-fopenmp", "-fexceptions"],
      "libraries": ["-ldnnl", "-fopenmp"]
    }
  ]
}
