# The CRC32C kernels for other core modules: cimport the C entry points from here.
from fastmsg._core.includes.crc32c cimport fastmsg_crc32c, fastmsg_crc32c_combine
