import fastmsg


def pytest_report_header(config):
    return f"fastmsg {fastmsg.__version__}; CRC32C kernel {fastmsg.crc32c_implementation}"

