"""diziner.benchmarks"""
