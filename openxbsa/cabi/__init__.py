"""The C ABI: libxbsa64.so, built with cffi's embedding mode over ``openxbsa.xbsa``."""
