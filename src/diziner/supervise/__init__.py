"""diziner.supervise"""
