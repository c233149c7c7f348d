output "function_names" {
  description = "Function key (api, payments, …) to its Lambda function name."
  value       = { for k, f in aws_lambda_function.golos : k => f.function_name }
}

output "invoke_arns" {
  value = { for k, f in aws_lambda_function.golos : k => f.invoke_arn }
}

output "log_group_names" {
  value = { for k, g in aws_cloudwatch_log_group.function : k => g.name }
}
