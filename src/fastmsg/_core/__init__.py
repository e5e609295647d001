"""fastmsg's native core: Cython modules over small C files in csrc/."""
