"""The `lossradar` command line and the end-to-end demo. Sits on top of the three parts."""
