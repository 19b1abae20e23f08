"""diziner.export"""
