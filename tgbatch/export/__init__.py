"""Exports of an output folder to other tools' formats."""
