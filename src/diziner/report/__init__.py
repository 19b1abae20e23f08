"""diziner.report"""
