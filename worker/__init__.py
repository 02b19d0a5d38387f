"""Analyses and briefings on Celery workers: the app and its configuration, the tasks, and the job records.

A layer between the HTTP API (which submits jobs and reads their state) and the services that run graphs
(graphs.service, graphs.ward_reports): api -> worker -> graphs.
"""
