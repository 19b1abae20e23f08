"""diziner.analysis"""
